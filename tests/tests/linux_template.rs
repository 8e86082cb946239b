//! Tier 3: a running Linux guest (lean kernel, busybox initramfs from images/) becomes a
//! template and its clones carry on. The guest (`revenant.test=ticker`) prints
//! `REVENANT-TICK n` every second from a new process; it is paused and snapshotted, the
//! template's VMM goes away, and clones restored in `cow` and `ondemand` modes must print
//! later ticks: user space, its system calls (through the SYSCALL bridge on PVM hosts),
//! process creation and timers all work after a restore.

use std::path::Path;
use std::time::{Duration, Instant};

use revenant_tests::images::linux_guest;
use revenant_tests::linux_template::{snapshot_and_stop, LinuxClone};
use revenant_tests::linux_vm::LinuxVm;
use revenant_tests::skip::host_is_pvm;
use revenant_tests::vmm_process::ApiVmm;

const LIMIT: Duration = Duration::from_secs(240);

/// The highest tick in `text`.
fn last_tick(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("REVENANT-TICK ")?.parse().ok())
        .max()
}

/// Waits until the console shows a tick above `above`.
fn wait_for_tick(console: &Path, above: u64, what: &str) -> u64 {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if let Some(n) = last_tick(&text).filter(|n| *n > above) {
            return n;
        }
        assert!(
            start.elapsed() < LIMIT,
            "{what}: no tick above {above} within {LIMIT:?}; console:\n{text}"
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
    let body = LinuxVm {
        kernel: &kernel,
        initramfs: &initramfs,
        args: "revenant.test=ticker",
        console: &console,
        memory: 128 << 20,
        hotplug: 0,
        max_vcpus: 1,
        devices: "",
    }
    .body();
    assert_eq!(source.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    wait_for_tick(&console, 1, "template");
    let templates = tempfile::tempdir().unwrap();
    let template = templates.path().join("linux");
    snapshot_and_stop(&mut source, &template);
    let at = last_tick(&std::fs::read_to_string(&console).unwrap()).unwrap();
    for mode in ["cow", "ondemand"] {
        let mut clone = LinuxClone::fork(&template, mode);
        let tick = wait_for_tick(&clone.console, at, mode);
        eprintln!("{mode} clone: template stopped at tick {at}, clone reached {tick}");
        let counters = clone.vmm.client.get("vm.counters").json();
        if host_is_pvm() {
            assert!(
                counters["syscalls"].as_u64().unwrap_or(0) > 0,
                "{mode}: no system calls bridged in the clone: {counters}"
            );
        }
    }
}
