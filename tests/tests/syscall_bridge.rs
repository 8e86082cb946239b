//! System calls from guest user mode. On this project's PVM hosts SYSCALL from CPL3 does
//! not switch to CPL0 by itself; Revenant's SYSCALL bridge (vmm/src/vstate/syscall_bridge.rs)
//! finishes it. The test guest checks SYSCALL's and SYSRETQ's architectural effects from
//! both sides, so it passes unchanged on hosts where the CPU does all of it.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::{host_is_pvm, kvm_available};
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

#[test]
fn syscall_from_user_mode_enters_the_guest_kernel_and_returns() {
    if !kvm_available("syscall_from_user_mode_enters_the_guest_kernel_and_returns") {
        return;
    }
    const ROUNDS: u32 = 1000;
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "syscall.bin",
        &guests::long_mode_syscall(ROUNDS),
    );
    let body = test_guest_config(&image, "long", 16 << 20, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    let start = Instant::now();
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let counters = loop {
        let c = vmm.client.get("vm.counters").json();
        let reports = c["test_reports"].as_array().map_or(0, Vec::len);
        let crashed = c["test_reports"]
            .as_array()
            .is_some_and(|r| r.iter().any(|v| v.as_u64().unwrap_or(0) >= 0xdead_0000));
        if reports >= 8 || crashed {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "guest did not finish: {c}\n{}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!(
        "{ROUNDS} system calls in {:?} (boot included)",
        start.elapsed()
    );
    // LSTAR reads back; entry at CPL0 with RCX = return address, R11 = user RFLAGS (CF),
    // CF masked by SFMASK; back at CPL3 with CF restored; every call made.
    assert_eq!(
        counters["test_reports"],
        serde_json::json!([1, 0, 1, 3, 0, 3, 1, ROUNDS]),
        "{}",
        vmm.stderr()
    );
    if host_is_pvm() {
        assert_eq!(
            counters["syscalls"],
            serde_json::json!(ROUNDS),
            "{counters}"
        );
    }
}
