//! The CPUID profile. What the VMM puts in its CPUID table is unit-tested in
//! vmm/src/boot/cpuid.rs; here a guest reads CPUID. On this host's PVM KVM the guest sees the
//! host's leaf 1 ECX and leaf 7 whatever the VMM sets (docs/pvm-notes.md), so these tests
//! check the leaves PVM does take from the VMM's table: 0x8000_0001 ECX and the KVM leaf.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::{host_is_pvm, kvm_available, skip};
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

const MISALIGNSSE: u32 = 1 << 7;
const PV_UNHALT: u32 = 1 << 7;
const PV_SEND_IPI: u32 = 1 << 11;

/// Boots the CPUID guest with `profile`; returns (vm.info cpu_profile, reports).
fn guest_cpuid(profile: &str) -> (String, Vec<u32>) {
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "cpuid.bin", &guests::long_mode_cpuid());
    let body = test_guest_config(
        &image,
        "long",
        16777216,
        "Off",
        &format!(r#""cpu_profile":"{profile}""#),
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["cpu_profile"], profile);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let start = Instant::now();
    loop {
        let reports: Vec<u32> = vmm.reports().into_iter().map(|v| v as u32).collect();
        if reports.len() >= 4 {
            let info = vmm.client.get("vm.info").json();
            return (info["cpu_profile"].as_str().unwrap().to_string(), reports);
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no CPUID reports: {}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pvm_safe_and_host_profiles_differ_where_the_host_honours_the_table() {
    let name = "pvm_safe_and_host_profiles_differ_where_the_host_honours_the_table";
    if !kvm_available(name) {
        return;
    }
    let (auto, safe) = guest_cpuid("auto");
    let (_, host) = guest_cpuid("host");
    let expected_auto = if host_is_pvm() { "pvm-safe" } else { "host" };
    assert_eq!(auto, expected_auto, "vm.info reports the resolved profile");
    // Hypercall-based PV features are never offered (VMCALL hangs on PVM).
    for r in [&safe, &host] {
        assert_eq!(
            r[3] & (PV_UNHALT | PV_SEND_IPI),
            0,
            "KVM features {:#x}",
            r[3]
        );
    }
    if !host_is_pvm() {
        return skip(
            name,
            "not a PVM host: auto is host here, nothing more to compare",
        );
    }
    if host[2] & MISALIGNSSE == 0 {
        return skip(name, "this CPU has no MISALIGNSSE to hide");
    }
    assert_eq!(
        safe[2] & MISALIGNSSE,
        0,
        "pvm-safe hides MISALIGNSSE: {:#x}",
        safe[2]
    );
}
