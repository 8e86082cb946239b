//! Instructions this host's PVM KVM refuses at guest CPL0 (shared/PVM.md): Revenant's
//! fallback emulation handles INT3 (#BP injected), POPCNT and FWAIT, and stops the VM with a
//! message naming anything else. On a host whose KVM emulates these itself the guests still
//! run correctly; the fallback counts are then only checked on PVM.

use std::time::Duration;

use revenant_tests::guests;
use revenant_tests::skip::{host_is_pvm, kvm_available};
use revenant_tests::vmm_process::{
    run_direct, test_guest_config, test_reports, write_guest, ApiVmm,
};

#[test]
fn refused_instructions_are_emulated_and_counted() {
    if !kvm_available("refused_instructions_are_emulated_and_counted") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "fallbacks.bin",
        &guests::long_mode_fallbacks(true),
    );
    let body = test_guest_config(&image, "long", 16777216, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let start = std::time::Instant::now();
    let counters = loop {
        let c = vmm.client.get("vm.counters").json();
        if c["test_reports"].as_array().map_or(0, Vec::len) >= 4 {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "guest did not finish: {}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        counters["test_reports"],
        serde_json::json!([0xa0, 0xb0, 8, 0xa1])
    );
    if host_is_pvm() {
        assert_eq!(
            counters["fallback_emulations"],
            serde_json::json!({"fwait": 1, "int3": 1, "popcnt": 1})
        );
    }
}

#[test]
fn fallback_counts_are_reported() {
    if !kvm_available("fallback_counts_are_reported") {
        return;
    }
    if !host_is_pvm() {
        revenant_tests::skip::skip(
            "fallback_counts_are_reported",
            "KVM here emulates these itself: no fallbacks to count",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "fallbacks.bin",
        &guests::long_mode_fallbacks(false),
    );
    let run = run_direct(
        &[
            "--test-guest",
            image.to_str().unwrap(),
            "--test-guest-mode",
            "long",
            "--memory",
            "16M",
            "-v",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    assert_eq!(test_reports(&run.stderr), vec![0xa0, 0xb0, 8, 0xa1]);
    for name in ["int3", "popcnt", "fwait"] {
        assert!(
            run.stderr.contains(&format!("fallback {name}")),
            "no fallback log for {name}: {}",
            run.stderr
        );
    }
}

#[test]
fn unsupported_instruction_stops_the_vm_naming_it() {
    if !kvm_available("unsupported_instruction_stops_the_vm_naming_it") {
        return;
    }
    if !host_is_pvm() {
        revenant_tests::skip::skip(
            "unsupported_instruction_stops_the_vm_naming_it",
            "KVM here emulates XGETBV itself",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "xgetbv.bin",
        &guests::long_mode_unsupported_instruction(),
    );
    let run = run_direct(
        &[
            "--test-guest",
            image.to_str().unwrap(),
            "--test-guest-mode",
            "long",
            "--memory",
            "16M",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(test_reports(&run.stderr), vec![0xa0]);
    assert!(
        run.stderr.contains("`xgetbv`") && run.stderr.contains("rip 0x"),
        "{}",
        run.stderr
    );
}
