//! vCPU hot-plug through `vm.resize` (kata calls it on every container create): the ACPI CPU
//! hotplug controller and GED, driven by a test guest that handles them as an OS would.

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{write_guest, ApiVmm};

const GED_CPU: u64 = 1;
const ENABLED: u64 = 1;
const INSERTING: u64 = 2;
const REMOVING: u64 = 4;

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
    assert_eq!(vmm.next_reports(&mut seen, 1), vec![0xa0]);

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
    let r = vmm.next_reports(&mut seen, 5);
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
    let r = vmm.next_reports(&mut seen, 5);
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
    let r = vmm.next_reports(&mut seen, 5);
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

const MIB: u64 = 1 << 20;

/// A `vm.create` body: a long-mode test guest with one vCPU (up to `max_vcpus`), `size`
/// bytes of boot memory and `hotplug` bytes of hot-pluggable memory.
fn hotplug_vm(image: &std::path::Path, max_vcpus: u32, size: u64, hotplug: u64) -> String {
    format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":{max_vcpus}}},"memory":{{"size":{size},"hotplug_size":{hotplug}}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}}}}"#,
        image.display()
    )
}

fn memory_hotplug(vmm: &mut ApiVmm) -> serde_json::Value {
    let info = vmm.client.get("vm.info").json();
    info["memory_hotplug"].clone()
}

/// Memory resize through virtio-mem (`desired_ram`), alone and together with vCPUs. The
/// test guest has no virtio-mem driver, so nothing is ever plugged: `vm.info` shows the
/// requested size changing and the plugged size (and `memory_actual_size`) staying put.
/// A guest that does plug is in
/// `a_guest_with_a_virtio_mem_driver_plugs_and_unplugs_what_vm_resize_asks`, and the
/// device's protocol in the tier-1 tests in `vmm/src/devices/virtio/mem/tests.rs`.
#[test]
fn memory_is_resized_through_virtio_mem() {
    let name = "memory_is_resized_through_virtio_mem";
    if !kvm_available(name) {
        return;
    }
    let size = 32 * MIB;
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "hotplug.bin",
        &guests::long_mode_cpu_hotplug_handler(4),
    );
    let body = hotplug_vm(&image, 4, size, 512 * MIB);
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    // Before boot a resize only changes the config; the device starts with it.
    let grow = format!(r#"{{"desired_ram":{}}}"#, size + 64 * MIB);
    assert_eq!(resize(&mut vmm, &grow), 204);
    assert_eq!(memory_hotplug(&mut vmm)["requested_size"], 64 * MIB);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(vmm.next_reports(&mut seen, 1), vec![0xa0]);

    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["memory"]["size"], size);
    assert_eq!(info["config"]["memory"]["hotplug_size"], 512 * MIB);
    assert_eq!(info["config"]["memory"]["hotplugged_size"], 64 * MIB);
    assert_eq!(info["memory_actual_size"], size);
    assert_eq!(
        info["memory_hotplug"],
        serde_json::json!({
            "block_size": 2 * MIB,
            "region_size": 512 * MIB,
            "requested_size": 64 * MIB,
            "plugged_size": 0,
        })
    );

    // Bad sizes are refused naming desired_ram, and nothing of the request is applied.
    for bad in [size - 2 * MIB, size + MIB, size + 514 * MIB, u64::MAX] {
        let body = format!(r#"{{"desired_vcpus":4,"desired_ram":{bad}}}"#);
        let r = vmm.client.put("vm.resize", Some(&body));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["field"], "desired_ram", "{bad}");
    }
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 1);
    assert_eq!(info["memory_hotplug"]["requested_size"], 64 * MIB);

    // +256 MiB and 1 -> 4 vCPUs in one request; the same request again is a no-op 204.
    let body = format!(
        r#"{{"desired_vcpus":4,"desired_ram":{}}}"#,
        size + 256 * MIB
    );
    for _ in 0..2 {
        assert_eq!(resize(&mut vmm, &body), 204);
        let info = vmm.client.get("vm.info").json();
        assert_eq!(info["config"]["cpus"]["boot_vcpus"], 4);
        assert_eq!(info["config"]["memory"]["hotplugged_size"], 256 * MIB);
        assert_eq!(info["memory_hotplug"]["requested_size"], 256 * MIB);
        // No virtio-mem driver in this guest: nothing gets plugged.
        assert_eq!(info["memory_hotplug"]["plugged_size"], 0);
        assert_eq!(info["memory_actual_size"], size);
    }

    // -128 MiB and 4 -> 2 vCPUs.
    let body = format!(
        r#"{{"desired_vcpus":2,"desired_ram":{}}}"#,
        size + 128 * MIB
    );
    assert_eq!(resize(&mut vmm, &body), 204);
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 2);
    assert_eq!(info["memory_hotplug"]["requested_size"], 128 * MIB);
    // Back to the boot size.
    assert_eq!(
        resize(&mut vmm, &format!(r#"{{"desired_ram":{size}}}"#)),
        204
    );
    assert_eq!(memory_hotplug(&mut vmm)["requested_size"], 0);
    assert_eq!(vmm.client.put("vm.shutdown", None).status, 204);

    // What a Linux guest sees (MemTotal, CPUs online) is checked in tier 3:
    // linux_virtio.rs, `a_linux_guest_sees_its_memory_and_vcpus_grow`.
}

#[test]
fn desired_ram_without_hotplug_memory_is_refused() {
    if !kvm_available("desired_ram_without_hotplug_memory_is_refused") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    let body = revenant_tests::vmm_process::test_guest_config(&image, "real", 16 * MIB, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let r = vmm.client.put(
        "vm.resize",
        Some(&format!(r#"{{"desired_ram":{}}}"#, 18 * MIB)),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "desired_ram");
    assert!(
        r.json()["reason"]
            .as_str()
            .is_some_and(|s| s.contains("no hot-pluggable memory")),
        "{}",
        r.json()
    );
    // The current size is still a no-op success, and vm.info has no memory_hotplug.
    let r = vmm.client.put(
        "vm.resize",
        Some(&format!(r#"{{"desired_ram":{}}}"#, 16 * MIB)),
    );
    assert_eq!(r.status, 204);
    let info = vmm.client.get("vm.info").json();
    assert!(info.get("memory_hotplug").is_none(), "{info}");
    assert!(
        info["config"]["memory"].get("hotplugged_size").is_none(),
        "{info}"
    );
    assert_eq!(info["memory_actual_size"], 16 * MIB);
}

/// Kata's templating flow: a template boots small with hot-pluggable memory, and a clone
/// restored from it grows to the pod's size. The clone gets the same region (it is a
/// function of the config) and a virtio-mem device no driver has started yet.
#[test]
fn a_clone_of_a_template_with_hotplug_memory_grows() {
    if !kvm_available("a_clone_of_a_template_with_hotplug_memory_grows") {
        return;
    }
    let size = 32 * MIB;
    let mut template = ApiVmm::start();
    let image = write_guest(
        template.dir.path(),
        "ticker.bin",
        &guests::long_mode_ticker(24),
    );
    let body = hotplug_vm(&image, 1, size, 256 * MIB);
    assert_eq!(template.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(template.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    template.next_reports(&mut seen, 1);
    assert_eq!(template.client.put("vm.pause", None).status, 204);
    let dir = template.dir.path().join("template");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, dir.display());
    let r = template.client.put("vm.snapshot", Some(&url));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    let mut clone = ApiVmm::start();
    let body = format!(r#"{{"source_url":"file://{}"}}"#, dir.display());
    let r = clone.client.put("vm.restore", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let info = clone.client.get("vm.info").json();
    assert_eq!(info["state"], "Paused");
    assert_eq!(info["memory_hotplug"]["region_size"], 256 * MIB);
    assert_eq!(info["memory_hotplug"]["requested_size"], 0);
    let grow = format!(r#"{{"desired_ram":{}}}"#, size + 128 * MIB);
    assert_eq!(resize(&mut clone, &grow), 204);
    assert_eq!(memory_hotplug(&mut clone)["requested_size"], 128 * MIB);
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let mut seen = clone.reports().len();
    clone.next_reports(&mut seen, 1);
    assert_eq!(clone.client.get("vm.info").json()["state"], "Running");
}

/// Memory resize end to end: a guest with a minimal virtio-mem driver plugs what
/// `desired_ram` asks for and unplugs it again; `vm.info` follows what the guest plugged
/// (+256 MiB, then -128 MiB, then back to the boot size).
#[test]
fn a_guest_with_a_virtio_mem_driver_plugs_and_unplugs_what_vm_resize_asks() {
    let name = "a_guest_with_a_virtio_mem_driver_plugs_and_unplugs_what_vm_resize_asks";
    if !kvm_available(name) {
        return;
    }
    let size = 32 * MIB;
    let mut vmm = ApiVmm::start();
    let body_for = |image: &std::path::Path| hotplug_vm(image, 1, size, 512 * MIB);
    let probe: revenant_vmm::config::VmConfig =
        serde_json::from_str(&body_for(std::path::Path::new("/x"))).unwrap();
    // virtio-mem is the only virtio device: the first slot.
    let base = revenant_vmm::vm::virtio_layout(&probe).unwrap()[0].base;
    let image = write_guest(
        vmm.dir.path(),
        "virtio-mem.bin",
        &guests::long_mode_virtio_mem_driver(base),
    );
    assert_eq!(
        vmm.client.put("vm.create", Some(&body_for(&image))).status,
        204
    );
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(vmm.next_reports(&mut seen, 1), vec![0xa0]);
    for (desired, plugged) in [(256, 256), (128, 128), (0, 0)] {
        let body = format!(r#"{{"desired_ram":{}}}"#, size + desired * MIB);
        assert_eq!(resize(&mut vmm, &body), 204);
        // The guest's request was acknowledged and it now has `plugged` MiB.
        assert_eq!(
            vmm.next_reports(&mut seen, 2),
            vec![0, plugged],
            "desired +{desired} MiB"
        );
        let info = vmm.client.get("vm.info").json();
        assert_eq!(
            info["memory_hotplug"]["plugged_size"],
            plugged * MIB,
            "{info}"
        );
        assert_eq!(info["memory_actual_size"], size + plugged * MIB, "{info}");
    }
}
