//! Hot-plug on the PCI bus through the real binary, as kata does it after boot:
//! `vm.add-disk` answers `{id, bdf}`, the guest is told through the GED and the PCI
//! hot-plug controller and finds a virtio-blk function at that address through PCI
//! configuration space; `vm.remove-device` asks it to eject the slot, after which the slot
//! is empty. The guest is a raw test guest doing what the DSDT's AML and Linux's acpiphp do.

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

const MEMORY: u64 = 32 << 20;
/// Vendor 0x1af4, device 0x1040 + 2 (block), as a configuration dword.
const VIRTIO_BLK_ID: u64 = 0x1042_1af4;

#[test]
fn a_disk_added_after_boot_appears_at_its_bdf_and_leaves_when_ejected() {
    if !kvm_available("a_disk_added_after_boot_appears_at_its_bdf_and_leaves_when_ejected") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "pcihp.bin",
        &guests::long_mode_pci_hotplug_handler(),
    );
    let boot_disk = vmm.dir.path().join("boot.img");
    std::fs::write(&boot_disk, vec![0u8; 1 << 20]).unwrap();
    let extra = format!(
        r#""disks":[{{"path":"{}","id":"root"}}]"#,
        boot_disk.display()
    );
    let body = test_guest_config(&image, "long", MEMORY, "Off", &extra);
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(vmm.next_reports(&mut seen, 1), vec![0xa0]);

    // kata's add-disk body after boot.
    let data = vmm.dir.path().join("data.img");
    std::fs::write(&data, vec![0u8; 1 << 20]).unwrap();
    let add = format!(
        r#"{{"path":"{}","readonly":false,"image_type":"Raw","vhost_user":false,"num_queues":1,"queue_size":128,"iommu":false,"direct":false}}"#,
        data.display()
    );
    let r = vmm.client.put("vm.add-disk", Some(&add));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let added = r.json();
    assert_eq!(added["id"], "disk0", "{added}");
    assert_eq!(added["bdf"], "0000:00:01.0", "{added}");
    // The guest found the device in slot 1 through configuration space.
    assert_eq!(vmm.next_reports(&mut seen, 2), vec![1, VIRTIO_BLK_ID]);
    let c = vmm.client.get("vm.counters").json();
    assert_eq!(c["pci_devices"][0]["bdf"], "0000:00:01.0", "{c}");
    assert_eq!(c["pci_devices"][0]["kind"], "virtio-blk", "{c}");
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["disks"][1]["id"], "disk0", "{info}");

    // A second one takes the next slot; ids stay unique.
    let named = format!(
        r#"{{"path":"{}","id":"scratch","readonly":true}}"#,
        data.display()
    );
    let r = vmm.client.put("vm.add-disk", Some(&named));
    assert_eq!(r.json()["bdf"], "0000:00:02.0");
    assert_eq!(vmm.next_reports(&mut seen, 2), vec![2, VIRTIO_BLK_ID]);
    let r = vmm.client.put("vm.add-disk", Some(&named));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("disks[3].id"))
    );

    // Removing: unknown id, a boot-time (virtio-mmio) disk, then the hot-plugged one.
    let r = vmm
        .client
        .put("vm.remove-device", Some(r#"{"id":"nosuch"}"#));
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("id")));
    let r = vmm.client.put("vm.remove-device", Some(r#"{"id":"root"}"#));
    assert_eq!(r.status, 409);
    let r = vmm
        .client
        .put("vm.remove-device", Some(r#"{"id":"disk0"}"#));
    assert_eq!(r.status, 204);
    // The guest ejected slot 1, which now reads as empty.
    assert_eq!(vmm.next_reports(&mut seen, 2), vec![0xe1, 0xffff_ffff]);
    let c = vmm.client.get("vm.counters").json();
    let devices = c["pci_devices"].as_array().unwrap();
    assert_eq!(devices.len(), 1, "{c}");
    assert_eq!(devices[0]["id"], "scratch", "{c}");
    let info = vmm.client.get("vm.info").json();
    let ids: Vec<&str> = info["config"]["disks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, ["root", "scratch"], "{info}");

    // The freed slot is used again.
    let r = vmm.client.put("vm.add-disk", Some(&add));
    assert_eq!(r.json()["bdf"], "0000:00:01.0");
    assert_eq!(vmm.next_reports(&mut seen, 2), vec![1, VIRTIO_BLK_ID]);
    // Templates do not carry hot-plugged devices yet: a clear refusal.
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let dest = vmm.dir.path().join("template");
    let r = vmm.client.put(
        "vm.snapshot",
        Some(&format!(
            r#"{{"destination_url":"file://{}"}}"#,
            dest.display()
        )),
    );
    assert_eq!(r.status, 409);
    assert!(String::from_utf8_lossy(&r.body).contains("hot-plugged"));
}
