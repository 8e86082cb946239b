//! vCPU hot-plug through `vm.resize` (kata calls it on every container create): the ACPI CPU
//! hotplug controller and GED, driven by a test guest that handles them as an OS would.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{write_guest, ApiVmm};

const GED_CPU: u64 = 1;
const ENABLED: u64 = 1;
const INSERTING: u64 = 2;
const REMOVING: u64 = 4;

/// Waits until the guest reported `n` more values than `seen`, returns the new ones.
fn next_reports(vmm: &mut ApiVmm, seen: &mut usize, n: usize) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let r = vmm.reports();
        if r.len() >= *seen + n {
            let new = r[*seen..*seen + n].to_vec();
            *seen += n;
            return new;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "got {:?}",
            &r[*seen..]
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn resize(vmm: &mut ApiVmm, body: &str) -> u16 {
    vmm.client.put("vm.resize", Some(body)).status
}

#[test]
fn vcpus_are_hot_plugged_and_unplugged_through_acpi() {
    if !kvm_available("vcpus_are_hot_plugged_and_unplugged_through_acpi") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "hotplug.bin",
        &guests::long_mode_cpu_hotplug_handler(4),
    );
    let body = format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":4}},"memory":{{"size":16777216}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}}}}"#,
        image.display()
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(next_reports(&mut vmm, &mut seen, 1), vec![0xa0]);

    // Bad sizes are refused naming the field; the same size again is a no-op success.
    for bad in [
        r#"{"desired_vcpus":0}"#,
        r#"{"desired_vcpus":5}"#,
        r#"{"desired_ram":1}"#,
    ] {
        let r = vmm.client.put("vm.resize", Some(bad));
        assert_eq!(r.status, 400, "{bad}");
        assert!(
            r.json()["field"].as_str().unwrap().starts_with("desired_"),
            "{bad}"
        );
    }
    assert_eq!(resize(&mut vmm, r#"{"desired_vcpus":1}"#), 204);
    assert_eq!(resize(&mut vmm, r#"{"desired_vcpus":1}"#), 204);

    // 1 -> 4: three vCPUs created, announced as inserting.
    assert_eq!(resize(&mut vmm, r#"{"desired_vcpus":4}"#), 204);
    let r = next_reports(&mut vmm, &mut seen, 5);
    assert_eq!(
        r,
        vec![
            GED_CPU,
            ENABLED,
            0x100 | ENABLED | INSERTING,
            0x200 | ENABLED | INSERTING,
            0x300 | ENABLED | INSERTING
        ]
    );
    assert_eq!(
        vmm.client.get("vm.info").json()["config"]["cpus"]["boot_vcpus"],
        4
    );
    assert_eq!(
        revenant_tests::vmm_process::vcpu_thread_names(vmm.child.id()).len(),
        4
    );

    // 4 -> 2: vCPUs 2 and 3 announced as removing (the guest acknowledged the inserts).
    assert_eq!(resize(&mut vmm, r#"{"desired_vcpus":2}"#), 204);
    let r = next_reports(&mut vmm, &mut seen, 5);
    assert_eq!(
        r,
        vec![
            GED_CPU,
            ENABLED,
            0x100 | ENABLED,
            0x200 | ENABLED | REMOVING,
            0x300 | ENABLED | REMOVING
        ]
    );
    assert_eq!(
        vmm.client.get("vm.info").json()["config"]["cpus"]["boot_vcpus"],
        2
    );

    // 2 -> 3: the guest ejected 2 and 3; vCPU 2 comes back (its KVM vCPU is reused), 3 stays out.
    assert_eq!(resize(&mut vmm, r#"{"desired_vcpus":3}"#), 204);
    let r = next_reports(&mut vmm, &mut seen, 5);
    assert_eq!(
        r,
        vec![
            GED_CPU,
            ENABLED,
            0x100 | ENABLED,
            0x200 | ENABLED | INSERTING,
            0x300
        ]
    );
    assert_eq!(
        revenant_tests::vmm_process::vcpu_thread_names(vmm.child.id()).len(),
        4,
        "no new thread for a re-plugged vCPU"
    );

    // Hot-plugged vCPUs wait for SIPI inside KVM; pausing must still reach every one.
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Paused");
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    assert_eq!(vmm.client.put("vm.shutdown", None).status, 204);
}
