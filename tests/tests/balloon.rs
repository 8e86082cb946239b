//! virtio-balloon through the real binary, driven the way a shim would: `vm.create` with a
//! `balloon`, a guest with a minimal balloon driver, `vm.resize {desired_balloon}` to ask
//! for pages, and `vm.counters`/`vm.info` to see what the guest gave back.

use revenant_tests::guests::{self, BALLOON_GUEST_PAGES};
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};
use revenant_vmm::config::VmConfig;

const MEMORY: u64 = 32 << 20;

#[test]
fn a_guest_inflating_its_balloon_gives_pages_back_to_the_host() {
    if !kvm_available("a_guest_inflating_its_balloon_gives_pages_back_to_the_host") {
        return;
    }
    let mut vmm = ApiVmm::start();
    // The balloon is the only virtio device: the first slot of the layout.
    let body_for = |image: &std::path::Path| {
        test_guest_config(
            image,
            "long",
            MEMORY,
            "Off",
            r#""balloon":{"size":0,"free_page_reporting":true}"#,
        )
    };
    let probe: VmConfig =
        serde_json::from_str(&body_for(std::path::Path::new("/x"))).expect("config parses");
    let layout = revenant_vmm::vm::virtio_layout(&probe).expect("layout");
    assert_eq!(layout.len(), 1);
    let image = write_guest(
        vmm.dir.path(),
        "balloon.bin",
        &guests::long_mode_balloon_driver(layout[0].base),
    );
    assert_eq!(
        vmm.client.put("vm.create", Some(&body_for(&image))).status,
        204
    );
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(vmm.next_reports(&mut seen, 1), vec![0xa0]);

    // Bad requests name the field; nothing reaches the guest.
    for bad in [
        r#"{"desired_balloon":4097}"#,
        r#"{"desired_balloon":68719476736}"#,
    ] {
        let r = vmm.client.put("vm.resize", Some(bad));
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["field"], "desired_balloon", "{bad}");
    }
    let before = vmm.client.get("vm.counters").json();
    assert_eq!(before["balloon"]["target_bytes"], 0);
    assert_eq!(before["balloon"]["inflated_pages"], 0);

    // Ask for 5 pages: the guest sees num_pages = 5, inflates 5 of its 8 marked pages, and
    // those (only those) read as zero afterwards.
    let want = 5u64;
    assert!(want <= u64::from(BALLOON_GUEST_PAGES));
    let r = vmm.client.put(
        "vm.resize",
        Some(&format!(r#"{{"desired_balloon":{}}}"#, want * 4096)),
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        vmm.next_reports(&mut seen, 3),
        vec![want, want, 0xd0],
        "num_pages seen, pages reading zero, done"
    );
    let c = vmm.client.get("vm.counters").json();
    let b = &c["balloon"];
    assert_eq!(b["target_bytes"], want * 4096, "{c}");
    assert_eq!(b["actual_bytes"], want * 4096, "{c}");
    assert_eq!(b["inflated_pages"], want, "{c}");
    assert_eq!(b["discarded_bytes"], want * 4096, "{c}");
    assert_eq!(b["dropped"], 0, "{c}");
    // vm.info counts the balloon out of the guest's memory, as Cloud Hypervisor does.
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["memory_actual_size"], MEMORY - want * 4096, "{info}");
    assert_eq!(info["config"]["balloon"]["size"], want * 4096, "{info}");
    // The same size again is a no-op success.
    assert_eq!(
        vmm.client
            .put(
                "vm.resize",
                Some(&format!(r#"{{"desired_balloon":{}}}"#, want * 4096))
            )
            .status,
        204
    );

    // A template of this VM forks a clone whose balloon is where the guest left it: same
    // target and actual, the device running (its restored queues checked), the
    // inflated pages still zero in the clone's memory.
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let template = vmm.dir.path().join("template");
    let r = vmm.client.put(
        "vm.snapshot",
        Some(&format!(
            r#"{{"destination_url":"file://{}"}}"#,
            template.display()
        )),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let mut clone = ApiVmm::start();
    let r = clone.client.put(
        "vm.restore",
        Some(&format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"cow"}}"#,
            template.display()
        )),
    );
    assert_eq!(
        r.status,
        204,
        "{}: {}",
        String::from_utf8_lossy(&r.body),
        clone.stderr()
    );
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let c = clone.client.get("vm.counters").json();
    assert_eq!(c["balloon"]["target_bytes"], want * 4096, "{c}");
    assert_eq!(c["balloon"]["actual_bytes"], want * 4096, "{c}");
    let info = clone.client.get("vm.info").json();
    assert_eq!(info["memory_actual_size"], MEMORY - want * 4096, "{info}");
    // Asking the clone for more reaches its (restored, running) device.
    let r = clone
        .client
        .put("vm.resize", Some(r#"{"desired_balloon":65536}"#));
    assert_eq!(r.status, 204);
    let c = clone.client.get("vm.counters").json();
    assert_eq!(c["balloon"]["target_bytes"], 65536, "{c}");
}

#[test]
fn a_vm_without_a_balloon_refuses_desired_balloon_and_bad_configs_are_refused() {
    if !kvm_available("a_vm_without_a_balloon_refuses_desired_balloon") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "idle.bin",
        &guests::long_mode_fill_then_idle(1),
    );
    for (extra, field) in [
        (r#""balloon":{"size":100}"#, "balloon.size"),
        (r#""balloon":{"size":67108864}"#, "balloon.size"),
        (
            r#""balloon":{"statistics_polling_interval_s":100000000}"#,
            "balloon.statistics_polling_interval_s",
        ),
    ] {
        let body = test_guest_config(&image, "long", MEMORY, "Off", extra);
        let r = vmm.client.put("vm.create", Some(&body));
        assert_eq!(r.status, 400, "{extra}");
        assert_eq!(r.json()["field"], field, "{extra}");
    }
    let body = test_guest_config(&image, "long", MEMORY, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let r = vmm
        .client
        .put("vm.resize", Some(r#"{"desired_balloon":4096}"#));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["field"], "desired_balloon");
    assert!(vmm
        .client
        .get("vm.counters")
        .json()
        .get("balloon")
        .is_none());
}
