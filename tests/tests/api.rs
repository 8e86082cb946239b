//! The REST API driven the way kata's runtime drives it: real `revenant --api-socket`
//! process, real HTTP over the Unix socket, one keep-alive connection.

use std::time::Duration;

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

fn hello_config(vmm: &ApiVmm) -> String {
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    // Fields kata always sends that Revenant doesn't implement ride along: they must be
    // ignored (with a warning), not rejected.
    format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":2,"kvm_hyperv":false,"topology":{{"threads_per_core":1,"cores_per_die":1,"dies_per_package":1,"packages":1}}}},"memory":{{"size":33554432,"hotplug_size":0,"shared":false}},"payload":{{"test_guest":{{"path":"{}","mode":"real"}}}},"serial":{{"mode":"Off"}},"console":{{"mode":"Off"}},"iommu":false,"watchdog":false,"tdx":null}}"#,
        image.display()
    )
}

#[test]
fn lifecycle_create_boot_info_pause_resume_shutdown() {
    if !kvm_available("lifecycle_create_boot_info_pause_resume_shutdown") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let ping = vmm.client.get("vmm.ping");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.content_type.as_deref(), Some("application/json"));
    assert!(ping.json()["version"].is_string());

    let config = hello_config(&vmm);
    assert_eq!(vmm.client.put("vm.create", Some(&config)).status, 204);
    let info = vmm.client.get("vm.info");
    assert_eq!(info.status, 200);
    assert_eq!(info.content_type.as_deref(), Some("application/json"));
    let info = info.json();
    assert_eq!(info["state"], "Created");
    // The shape kata's Go client decodes: integers where it expects integers.
    assert_eq!(info["config"]["cpus"]["boot_vcpus"], 1);
    assert_eq!(info["config"]["cpus"]["max_vcpus"], 2);
    assert_eq!(info["config"]["memory"]["size"], 33554432);
    assert_eq!(info["config"]["memory"]["hotplug_size"], 0);
    assert_eq!(info["memory_actual_size"], 33554432);

    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Running");
    assert_vcpu_threads_named(vmm.child.id(), 1, &vmm.stderr());
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Paused");
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Running");
    assert_eq!(vmm.client.put("vm.shutdown", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Shutdown");
    // The configuration survives a shutdown: the VM can boot again.
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Running");

    let stderr_before = vmm.stderr();
    assert!(
        stderr_before.contains("kvm_hyperv") && stderr_before.contains("tdx"),
        "unknown fields must be named in a warning: {stderr_before}"
    );

    // vmm.shutdown is answered before the process exits, and the process then exits 0.
    assert_eq!(vmm.client.put("vmm.shutdown", None).status, 204);
    let status = vmm
        .wait_exit(Duration::from_secs(5))
        .expect("revenant exits after vmm.shutdown");
    assert!(status.success(), "exit status {status:?}");
    assert!(!vmm.socket.exists(), "API socket removed on exit");
}

fn assert_vcpu_threads_named(pid: u32, count: usize, log: &str) {
    let expected: Vec<String> = (0..count).map(|i| format!("vcpu{i}")).collect();
    assert_eq!(
        revenant_tests::vmm_process::vcpu_thread_names(pid),
        expected,
        "{log}"
    );
}

/// Each bad request: (action, body, expected status, field the error must name).
fn bad_requests(missing_kernel: &str) -> Vec<(&'static str, String, u16, &'static str)> {
    vec![
        ("vm.create", "{\"cpus\": ".into(), 400, "body"),
        ("vm.create", "".into(), 400, "body"),
        ("vm.create", "[1,2]".into(), 400, "body"),
        (
            "vm.create",
            r#"{"cpus":{"boot_vcpus":"two","max_vcpus":2}}"#.into(),
            400,
            "cpus.boot_vcpus",
        ),
        (
            "vm.create",
            r#"{"cpus":{"boot_vcpus":0,"max_vcpus":1}}"#.into(),
            400,
            "cpus.boot_vcpus",
        ),
        (
            "vm.create",
            r#"{"cpus":{"boot_vcpus":4,"max_vcpus":2}}"#.into(),
            400,
            "cpus.max_vcpus",
        ),
        (
            "vm.create",
            r#"{"cpus":{"boot_vcpus":1,"max_vcpus":100000}}"#.into(),
            400,
            "cpus.max_vcpus",
        ),
        (
            "vm.create",
            r#"{"cpus":{"boot_vcpus":-1,"max_vcpus":1}}"#.into(),
            400,
            "cpus.boot_vcpus",
        ),
        (
            "vm.create",
            r#"{"memory":{"size":1000001}}"#.into(),
            400,
            "memory.size",
        ),
        (
            "vm.create",
            r#"{"memory":{"size":0}}"#.into(),
            400,
            "memory.size",
        ),
        (
            "vm.create",
            r#"{"memory":{"size":"256M"}}"#.into(),
            400,
            "memory.size",
        ),
        (
            "vm.create",
            r#"{"memory":{"size":268435456,"hotplug_size":3}}"#.into(),
            400,
            "memory.hotplug_size",
        ),
        (
            "vm.create",
            r#"{"memory":{"hotplug_size":0}}"#.into(),
            400,
            "memory.size",
        ),
        (
            "vm.create",
            format!(
                r#"{{"memory":{{"size":268435456}},"payload":{{"kernel":"{missing_kernel}"}}}}"#
            ),
            400,
            "payload.kernel",
        ),
        (
            "vm.create",
            r#"{"payload":{"cmdline":42}}"#.into(),
            400,
            "payload.cmdline",
        ),
        (
            "vm.create",
            r#"{"serial":{"mode":"Telepathy"}}"#.into(),
            400,
            "serial.mode",
        ),
        (
            "vm.create",
            r#"{"serial":{"mode":"File"}}"#.into(),
            400,
            "serial.file",
        ),
        (
            "vm.create",
            r#"{"console":{"mode":"Tty"}}"#.into(),
            400,
            "console.mode",
        ),
        (
            "vm.create",
            format!(r#"{{"disks":[{{"path":"{missing_kernel}"}}]}}"#),
            400,
            "disks[0].path",
        ),
        (
            "vm.create",
            r#"{"disks":[{"readonly":"yes"}]}"#.into(),
            400,
            "disks[0].readonly",
        ),
        (
            "vm.create",
            r#"{"disks":[{"remote_swap":{"size":1000,"servers":["127.0.0.1:1"],"token_file":"/"}}]}"#
                .into(),
            400,
            "disks[0].remote_swap.size",
        ),
        (
            "vm.create",
            r#"{"vsock":{"cid":2,"socket":"/tmp/revenant-api-test.sock"}}"#.into(),
            400,
            "vsock.cid",
        ),
        (
            "vm.create",
            r#"{"vsock":{"cid":"three","socket":"/tmp/revenant-api-test.sock"}}"#.into(),
            400,
            "vsock.cid",
        ),
        (
            "vm.create",
            format!(r#"{{"vsock":{{"cid":3,"socket":"{missing_kernel}/v.sock"}}}}"#),
            400,
            "vsock.socket",
        ),
        (
            "vm.create",
            r#"{"rng":{"src":"/nonexistent/entropy"}}"#.into(),
            400,
            "rng.src",
        ),
        (
            "vm.create",
            r#"{"balloon":{"size":4097}}"#.into(),
            400,
            "balloon.size",
        ),
        (
            "vm.restore",
            r#"{"source_url":"file:///nonexistent","vsock":{"cid":"x","socket":"/tmp/s"}}"#.into(),
            400,
            "vsock.cid",
        ),
        ("vm.boot", String::new(), 409, "state"),
        ("vm.pause", String::new(), 409, "state"),
        ("vm.resume", String::new(), 409, "state"),
        ("vm.shutdown", String::new(), 409, "state"),
        ("vm.no-such-action", String::new(), 404, "path"),
    ]
}

#[test]
fn bad_input_gets_4xx_naming_the_field() {
    // Nothing here boots a VM, so KVM is not needed.
    let mut vmm = ApiVmm::start();
    let missing = vmm.dir.path().join("no-such-vmlinux");
    for (action, body, status, field) in bad_requests(missing.to_str().unwrap()) {
        let body = (!body.is_empty()).then_some(body.as_str());
        let r = vmm.client.put(action, body);
        assert_eq!(
            r.status,
            status,
            "{action} {body:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json"),
            "{action} {body:?}"
        );
        let json = r.json();
        assert_eq!(json["field"], field, "{action} {body:?}: {json}");
        let error = json["error"].as_str().unwrap();
        assert!(
            error.starts_with(field) && error.len() > field.len() + 2,
            "{error}"
        );
    }
    // vm.info before vm.create: a 4xx, not a crash; and the VMM still answers afterwards.
    assert_eq!(vmm.client.get("vm.info").status, 409);
    assert_eq!(vmm.client.get("vmm.ping").status, 200);
    // Wrong method on a known path.
    assert_eq!(
        vmm.client.request("GET", "vm.boot", None).unwrap().status,
        405
    );
    assert!(
        vmm.child.try_wait().unwrap().is_none(),
        "revenant died on bad input"
    );
}

#[test]
fn create_twice_and_boot_twice_are_refused() {
    if !kvm_available("create_twice_and_boot_twice_are_refused") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let config = hello_config(&vmm);
    assert_eq!(vmm.client.put("vm.create", Some(&config)).status, 204);
    let again = vmm.client.put("vm.create", Some(&config));
    assert_eq!(
        (again.status, again.json()["field"].as_str()),
        (409, Some("state"))
    );
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 409);
    assert_eq!(vmm.client.put("vm.resume", None).status, 409);
}

#[test]
fn guest_reset_is_reported_as_shutdown() {
    if !kvm_available("guest_reset_is_reported_as_shutdown") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        vmm.dir.path(),
        "hello.bin",
        &guests::real_mode_hello("bye\n"),
    );
    let body = test_guest_config(&image, "real", 16777216, "Tty", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let start = std::time::Instant::now();
    while vmm.client.get("vm.info").json()["state"] != "Shutdown" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "guest reset never seen"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(vmm.stdout(), "bye\n");
    // The VMM process outlives its guest: kata decides when to stop it.
    assert_eq!(vmm.client.get("vmm.ping").status, 200);
}

#[test]
fn every_openapi_path_is_served_with_its_method() {
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vmm/api/openapi.yaml"
    ))
    .unwrap();
    let mut routes = Vec::new();
    let mut path: Option<String> = None;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(p.to_string());
        } else if let (Some(p), Some(m)) = (
            &path,
            line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')),
        ) {
            if m == "get" || m == "put" {
                routes.push((m.to_uppercase(), p.clone()));
            }
        }
    }
    assert!(routes.len() >= 9, "parsed {routes:?}");
    let mut vmm = ApiVmm::start();
    for (method, action) in routes.iter().filter(|(_, a)| a != "vmm.shutdown") {
        let r = vmm.client.request(method, action, None).unwrap();
        assert!(
            r.status != 404 && r.status != 405,
            "{method} {action}: {}",
            r.status
        );
    }
    assert_eq!(vmm.client.put("vmm.shutdown", None).status, 204);
}

/// `serial.mode: "Pty"`: the guest's output comes out of the pseudo-terminal `vm.info`
/// names in `serial.file`, as Cloud Hypervisor reports it.
#[test]
fn a_pty_console_carries_the_guest_output() {
    if !kvm_available("a_pty_console_carries_the_guest_output") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    let body = test_guest_config(&image, "real", 16 << 20, "Pty", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let info = vmm.client.get("vm.info").json();
    let path = info["config"]["serial"]["file"]
        .as_str()
        .unwrap_or_else(|| panic!("no pty path: {info}"))
        .to_string();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    let mut tty = std::fs::File::open(&path).unwrap();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !got.ends_with(b"ready\n") {
        assert!(std::time::Instant::now() < deadline, "got {got:?}");
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut tty, &mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn disks_join_and_leave_before_boot_and_vfio_is_refused() {
    if !kvm_available("disks_join_and_leave_before_boot_and_vfio_is_refused") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = vmm.dir.path().join("data.img");
    std::fs::write(&image, vec![0u8; 1 << 20]).unwrap();
    // Before vm.create there is no configuration to add to.
    let disk = format!(
        r#"{{"path":"{}","readonly":true,"image_type":"Raw","vhost_user":false,"num_queues":1,"queue_size":128,"iommu":false,"direct":false}}"#,
        image.display()
    );
    let r = vmm.client.put("vm.add-disk", Some(&disk));
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));

    assert_eq!(
        vmm.client
            .put("vm.create", Some(&hello_config(&vmm)))
            .status,
        204
    );
    assert_eq!(vmm.client.put("vm.add-disk", Some(&disk)).status, 204);
    let named = format!(r#"{{"path":"{}","id":"scratch"}}"#, image.display());
    assert_eq!(vmm.client.put("vm.add-disk", Some(&named)).status, 204);
    let ids = |vmm: &mut ApiVmm| -> Vec<String> {
        let info = vmm.client.get("vm.info").json();
        info["config"]["disks"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|d| d["id"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(ids(&mut vmm), ["disk0", "scratch"]);
    // The same id twice, a missing file: 400 naming the field; nothing changes.
    let r = vmm.client.put("vm.add-disk", Some(&named));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("disks[2].id"))
    );
    let missing = r#"{"path":"/nonexistent/disk.img"}"#;
    let r = vmm.client.put("vm.add-disk", Some(missing));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("disks[2].path"))
    );
    assert_eq!(ids(&mut vmm), ["disk0", "scratch"]);

    let r = vmm
        .client
        .put("vm.remove-device", Some(r#"{"id":"disk0"}"#));
    assert_eq!(r.status, 204);
    assert_eq!(ids(&mut vmm), ["scratch"]);
    let r = vmm
        .client
        .put("vm.remove-device", Some(r#"{"id":"disk0"}"#));
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("id")));

    let r = vmm.client.put(
        "vm.add-device",
        Some(r#"{"path":"/sys/bus/pci/devices/0000:01:00.0","iommu":false}"#),
    );
    assert_eq!((r.status, r.json()["field"].as_str()), (400, Some("path")));
    assert!(r.json()["reason"].as_str().unwrap().contains("VFIO"));

    // The disk configured before boot is the booted VM's; one added now is hot-plugged
    // (tests/tests/pci_hotplug.rs follows a guest through it) and answered {id, bdf}.
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert_eq!(ids(&mut vmm), ["scratch"]);
    let r = vmm.client.put("vm.add-disk", Some(&disk));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["bdf"], "0000:00:01.0");
    assert_eq!(ids(&mut vmm), ["scratch", "disk0"]);
    // A disk the VM booted with is on virtio-mmio, which has no hot-unplug.
    assert_eq!(
        vmm.client
            .put("vm.remove-device", Some(r#"{"id":"scratch"}"#))
            .status,
        409
    );
}
