//! virtio-net through the real binary on a real tap: the tap fd passed with `vm.add-net`
//! exactly as kata passes it (SCM_RIGHTS on the API socket), a guest with a minimal
//! virtio-net driver sending a frame the host sees on the tap and receiving one the host
//! sends, and a named tap the VMM creates itself.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use revenant_tests::guests::{self, NET_GUEST_FRAME_LEN, NET_GUEST_PAYLOAD, NET_TEST_ETHERTYPE};
use revenant_tests::skip::kvm_available;
use revenant_tests::tap::{create_tap, put_with_fds, set_up, unique_name, PacketSocket};
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};
use revenant_vmm::config::VmConfig;

const MEMORY: u64 = 32 << 20;

/// A tap for this test, or None (after a loud SKIP) without CAP_NET_ADMIN.
fn tap_or_skip(test: &str, tag: &str) -> Option<(String, std::os::fd::OwnedFd)> {
    let name = unique_name(tag);
    match create_tap(&name) {
        Ok(fd) => Some((name, fd)),
        Err(e) => {
            println!("SKIP: {test}: cannot create tap {name} ({e}); needs CAP_NET_ADMIN");
            None
        }
    }
}

/// The guest's only virtio device is its network card: the first slot of the layout.
fn net_mmio_base(body: &str) -> u64 {
    let probe: VmConfig = serde_json::from_str(body).expect("config parses");
    let mut probe = probe;
    probe.net.push(revenant_vmm::config::NetConfig {
        tap: Some("probe".into()),
        num_queues: 2,
        ..Default::default()
    });
    let layout = revenant_vmm::vm::virtio_layout(&probe).expect("layout");
    assert_eq!(layout.len(), 1);
    layout[0].base
}

/// `vm.create` with the virtio-net driver guest (its card is the first virtio slot) and
/// `extra` vm.create JSON (a `net` entry, or none when the card comes with vm.add-net).
fn create_with_net_driver(vmm: &mut ApiVmm, extra: &str) {
    let base = net_mmio_base(&test_guest_config(
        std::path::Path::new("/x"),
        "long",
        MEMORY,
        "Off",
        "",
    ));
    let image = write_guest(
        vmm.dir.path(),
        "net.bin",
        &guests::long_mode_net_driver(base),
    );
    let body = test_guest_config(&image, "long", MEMORY, "Off", extra);
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn a_guest_exchanges_frames_over_a_tap_passed_by_scm_rights() {
    let test = "a_guest_exchanges_frames_over_a_tap_passed_by_scm_rights";
    if !kvm_available(test) {
        return;
    }
    let Some((tap, tap_fd)) = tap_or_skip(test, "n") else {
        return;
    };
    set_up(&tap).expect("bring the tap up");
    let packets = PacketSocket::bind(&tap, NET_TEST_ETHERTYPE).expect("packet socket");
    let mut vmm = ApiVmm::start();
    create_with_net_driver(&mut vmm, "");

    // kata's body: an empty tap name, one queue pair, offloads and ip/mask to ignore.
    let body = r#"{"tap":"","ip":"192.168.249.1","mask":"255.255.255.0","mac":"52:54:00:aa:bb:01","iommu":false,"num_queues":2,"queue_size":256,"vhost_user":false,"vhost_mode":"Client","offload_tso":true,"offload_ufo":true,"offload_csum":true}"#;
    // Refused first: an fd that is not a tap, two fds, no fd at all.
    let file = tempfile::tempfile().unwrap();
    let r = put_with_fds(&vmm.socket, "vm.add-net", body, &[file.as_raw_fd()]).unwrap();
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("fds")),
        "not a tap"
    );
    let two = [tap_fd.as_raw_fd(), tap_fd.as_raw_fd()];
    let r = put_with_fds(&vmm.socket, "vm.add-net", body, &two).unwrap();
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("fds")),
        "two fds"
    );
    let r = put_with_fds(&vmm.socket, "vm.add-net", body, &[]).unwrap();
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("net[0].tap"))
    );
    // Then kata's request: 204 before boot, as Cloud Hypervisor answers.
    let r = put_with_fds(&vmm.socket, "vm.add-net", body, &[tap_fd.as_raw_fd()]).unwrap();
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    drop(tap_fd); // the VMM holds the tap now

    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["config"]["net"][0]["id"], "net0", "{info}");
    assert_eq!(
        info["config"]["net"][0]["mac"], "52:54:00:aa:bb:01",
        "{info}"
    );
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    assert_eq!(
        vmm.next_reports(&mut seen, 2),
        vec![0xa0, 0xa1],
        "frame sent"
    );

    // The guest's frame on the host side of the tap, from the MAC it was given.
    let deadline = Instant::now() + Duration::from_secs(10);
    let frame = loop {
        let f = packets.recv(Duration::from_millis(200)).unwrap();
        if let Some(f) = f.filter(|f| f.len() >= 18 && f[6..12] == [0x52, 0x54, 0, 0xaa, 0xbb, 1]) {
            break f;
        }
        assert!(
            Instant::now() < deadline,
            "no frame from the guest on {tap}"
        );
    };
    assert_eq!(frame.len(), NET_GUEST_FRAME_LEN);
    assert_eq!(&frame[..6], &[0xff; 6]);
    assert_eq!(&frame[12..14], &NET_TEST_ETHERTYPE.to_be_bytes());
    assert_eq!(&frame[14..18], &NET_GUEST_PAYLOAD.to_le_bytes());

    // A frame for the guest: it reports the first payload dword and the used length.
    let mut reply = vec![0x52, 0x54, 0, 0xaa, 0xbb, 1, 0x02, 0, 0, 0, 0, 9];
    reply.extend_from_slice(&NET_TEST_ETHERTYPE.to_be_bytes());
    reply.extend_from_slice(&0x1234_5678u32.to_le_bytes());
    reply.resize(100, 0x33);
    packets.send(&reply).unwrap();
    assert_eq!(
        vmm.next_reports(&mut seen, 3),
        vec![0x1234_5678, 12 + reply.len() as u64, 0xd0],
        "payload, used length (12-byte header + frame), done"
    );
    let c = vmm.client.get("vm.counters").json();
    let n = &c["net"][0];
    assert_eq!(
        (n["id"].as_str(), n["tap"].as_str()),
        (Some("net0"), Some(tap.as_str())),
        "{c}"
    );
    assert_eq!(n["tx_packets"], 1, "{c}");
    assert_eq!(n["tx_bytes"], NET_GUEST_FRAME_LEN as u64, "{c}");
    assert!(n["rx_packets"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(n["malformed_chains"], 0, "{c}");
    // A card added to the booted VM is hot-plugged on PCI: kata's request again, with a
    // second tap's fd, answered {id, bdf}.
    let (_, second) = tap_or_skip(test, "m").expect("a second tap");
    let r = put_with_fds(
        &vmm.socket,
        "vm.add-net",
        body.replace("bb:01", "bb:03").as_str(),
        &[second.as_raw_fd()],
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        (r.json()["id"].as_str(), r.json()["bdf"].as_str()),
        (Some("net1"), Some("0000:00:01.0"))
    );
    let c = vmm.client.get("vm.counters").json();
    assert_eq!(c["pci_devices"][0]["kind"], "virtio-net", "{c}");
}

#[test]
fn a_named_tap_is_created_and_released_with_the_vm() {
    let test = "a_named_tap_is_created_and_released_with_the_vm";
    if !kvm_available(test) {
        return;
    }
    // Only to learn we may create taps; the VMM creates its own below.
    let Some((_, probe)) = tap_or_skip(test, "p") else {
        return;
    };
    drop(probe);
    let tap = unique_name("c");
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    let body = test_guest_config(
        &image,
        "real",
        MEMORY,
        "Off",
        &format!(r#""net":[{{"tap":"{tap}"}}]"#),
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert!(
        std::path::Path::new(&format!("/sys/class/net/{tap}")).exists(),
        "the VMM created {tap}"
    );
    // No MAC configured: a random locally administered unicast one, kept in the config.
    let info = vmm.client.get("vm.info").json();
    let mac = info["config"]["net"][0]["mac"]
        .as_str()
        .expect("mac in vm.info")
        .to_string();
    let first = u8::from_str_radix(&mac[..2], 16).unwrap();
    assert_eq!(first & 0b11, 0b10, "local unicast: {mac}");
    assert_eq!(
        vmm.client.get("vm.counters").json()["net"][0]["mac"],
        mac.as_str()
    );
    // While the VM holds the tap, nobody else can attach it.
    assert!(create_tap(&tap).is_err(), "{tap} is attached to the VM");
    assert_eq!(vmm.client.put("vm.shutdown", None).status, 204);
    // A tap the VMM created goes away with its last fd.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::path::Path::new(&format!("/sys/class/net/{tap}")).exists() {
        assert!(
            Instant::now() < deadline,
            "{tap} still exists after shutdown"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A bad tap name is refused at vm.create naming the field.
    let mut vmm2 = ApiVmm::start();
    let bad = test_guest_config(
        &image,
        "real",
        MEMORY,
        "Off",
        r#""net":[{"tap":"no/slash"}]"#,
    );
    let r = vmm2.client.put("vm.create", Some(&bad));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("net[0].tap"))
    );
}

#[test]
fn a_clone_of_a_template_with_a_card_gets_its_own_tap_and_keeps_its_rings() {
    let test = "a_clone_of_a_template_with_a_card_gets_its_own_tap_and_keeps_its_rings";
    if !kvm_available(test) {
        return;
    }
    let Some((tap, tap_fd)) = tap_or_skip(test, "t") else {
        return;
    };
    drop(tap_fd); // recreated by the VMM from its name
    let clone_tap = unique_name("u");
    let mut vmm = ApiVmm::start();
    let extra = format!(r#""net":[{{"tap":"{tap}","mac":"52:54:00:aa:bb:01"}}]"#);
    create_with_net_driver(&mut vmm, &extra);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let mut seen = 0;
    // The frame went out (to a tap that is down here: dropped, counted); the guest now
    // waits with its rx buffer posted.
    assert_eq!(vmm.next_reports(&mut seen, 2), vec![0xa0, 0xa1]);
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
    let source = format!(r#""source_url":"file://{}""#, template.display());
    // The template's VM still holds its tap: the clone must bring its own.
    let r = clone
        .client
        .put("vm.restore", Some(&format!("{{{source}}}")));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("net[0].tap")),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = clone.client.put(
        "vm.restore",
        Some(&format!(
            r#"{{{source},"net":[{{"id":"nosuch","tap":"{clone_tap}"}}]}}"#
        )),
    );
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("net[0].id"))
    );
    let r = clone.client.put(
        "vm.restore",
        Some(&format!(
            r#"{{{source},"net":[{{"id":"net0","tap":"{clone_tap}"}}]}}"#
        )),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(clone.client.get("vm.info").json()["state"], "Paused");
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    // The clone's card runs on its own tap, with the template's MAC and ring positions:
    // a frame sent now lands in the buffer the guest posted before the snapshot.
    set_up(&clone_tap).expect("bring the clone's tap up");
    let packets = PacketSocket::bind(&clone_tap, NET_TEST_ETHERTYPE).expect("packet socket");
    let c = clone.client.get("vm.counters").json();
    assert_eq!(c["net"][0]["tap"], clone_tap.as_str(), "{c}");
    assert_eq!(c["net"][0]["mac"], "52:54:00:aa:bb:01", "{c}");
    let mut frame = vec![0x52, 0x54, 0, 0xaa, 0xbb, 1, 0x02, 0, 0, 0, 0, 9];
    frame.extend_from_slice(&NET_TEST_ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(&0xc10e_0001u32.to_le_bytes());
    frame.resize(64, 0);
    packets.send(&frame).unwrap();
    // The clone's report list starts empty.
    let mut seen = 0;
    assert_eq!(
        clone.next_reports(&mut seen, 3),
        vec![0xc10e_0001, 12 + 64, 0xd0]
    );
}
