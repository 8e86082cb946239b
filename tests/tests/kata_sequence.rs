//! Kata's runtime driving Revenant as it drives Cloud Hypervisor (shared/KATA.md): the same
//! start command, readiness polling, request bodies (with the fields kata always sends that
//! Revenant ignores), order, and the checks kata's Go client makes on every answer.
//!
//! Not covered here: hybrid vsock with a guest listener (tests/tests/vsock.rs drives the
//! device; tests/tests/linux_virtio.rs with a Linux guest), templating through `memory.zones`
//! (tests/tests/zones.rs). The guest is a raw test guest instead of kata's kernel so that the
//! sequence takes milliseconds; a Linux guest boots in ~35 s on this project's PVM hosts, and
//! what it does with hot-plugged devices is checked in tests/tests/linux_virtio.rs.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use revenant_tests::api_client::{ApiClient, Response};
use revenant_tests::bins::binary;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{wait_with_timeout, write_guest};
use revenant_tests::{guests, kata};

/// What kata's generated client requires of every answer: a 2xx status, and
/// `application/json` on any answer with a body.
fn kata_ok(r: &Response, what: &str) {
    assert!(
        (200..300).contains(&r.status),
        "{what}: HTTP {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    if !r.body.is_empty() {
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json"),
            "{what}"
        );
    }
}

#[test]
fn kata_create_boot_resize_pause_resume_stop() {
    if !kvm_available("kata_create_boot_resize_pause_resume_stop") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("clh-api.sock");
    // Started exactly as kata starts its VMM (plus -v, as in debug mode).
    let mut child = std::process::Command::new(binary("revenant"))
        .arg("--api-socket")
        .arg(&socket)
        .arg("-v")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut api = ApiClient::new(&socket);

    // Readiness: vmm.ping every 10 ms for up to 10 s; any 2xx.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = api.request("GET", "vmm.ping", None) {
            if (200..300).contains(&r.status) {
                break;
            }
        }
        assert!(Instant::now() < deadline, "VMM not ready in 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }

    // One 10 s deadline for create .. running, as in kata.
    let started = Instant::now();
    let image = write_guest(dir.path(), "guest.bin", &guests::long_mode_ticker(24));
    kata_ok(
        &api.put(
            "vm.create",
            Some(&kata::vm_config(&image, "long", dir.path())),
        ),
        "vm.create",
    );
    let info = api.get("vm.info");
    kata_ok(&info, "vm.info");
    assert_eq!(info.json()["state"], "Created");
    // vm.add-net per network, on its own connection with the tap fd (SCM_RIGHTS), before
    // boot: 204. Without CAP_NET_ADMIN there is no tap to pass; say so and go on.
    let tap_name = revenant_tests::tap::unique_name("k");
    match revenant_tests::tap::create_tap(&tap_name) {
        Ok(tap) => {
            let body = r#"{"tap":"","ip":"192.168.249.1","mask":"255.255.255.0","mac":"52:54:00:aa:bb:02","iommu":false,"num_queues":2,"queue_size":256,"vhost_user":false,"vhost_mode":"Client","offload_tso":true,"offload_ufo":true,"offload_csum":true}"#;
            let r =
                revenant_tests::tap::put_with_fds(&socket, "vm.add-net", body, &[tap.as_raw_fd()])
                    .expect("vm.add-net");
            assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        }
        Err(e) => println!(
            "SKIP: kata vm.add-net: cannot create tap {tap_name} ({e}); needs CAP_NET_ADMIN"
        ),
    }
    kata_ok(&api.put("vm.boot", None), "vm.boot");
    // The agent channel kata dials next: the hybrid vsock socket exists once the VM runs.
    assert!(
        dir.path().join("clh.sock").exists(),
        "no hybrid vsock socket at {}/clh.sock",
        dir.path().display()
    );
    let info = api.get("vm.info");
    kata_ok(&info, "vm.info");
    let info = info.json();
    assert_eq!(info["state"], "Running");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The fields kata's Go client decodes, with the types it expects.
    for path in [
        &info["config"]["cpus"]["boot_vcpus"],
        &info["config"]["cpus"]["max_vcpus"],
        &info["config"]["memory"]["size"],
        &info["config"]["memory"]["hotplug_size"],
        &info["memory_actual_size"],
    ] {
        assert!(path.is_u64(), "not an integer in {info}");
    }
    assert!(info["memory_actual_size"].as_u64().unwrap() > 0);

    // A container's block rootfs: vm.add-disk after boot, answered {id, bdf} with the bdf
    // exactly 0000:00:DD.0 (the agent finds the disk by its slot).
    let disk = dir.path().join("container.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let r = api.put(
        "vm.add-disk",
        Some(&format!(
            r#"{{"path":"{}","readonly":false,"image_type":"Raw","vhost_user":false,"num_queues":1,"queue_size":128,"iommu":false,"direct":false,"id":"_disk1"}}"#,
            disk.display()
        )),
    );
    kata_ok(&r, "vm.add-disk");
    let added = r.json();
    assert_eq!(added["id"], "_disk1", "{added}");
    let bdf = added["bdf"].as_str().expect("bdf is a string");
    let ok = bdf.len() == 12
        && bdf.starts_with("0000:00:")
        && bdf.ends_with(".0")
        && bdf[8..10]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
    assert!(ok, "bdf {bdf:?} is not 0000:00:DD.0");

    // vCPU threads are named vcpuN (kata moves them into cgroups by name).
    let names = revenant_tests::vmm_process::vcpu_thread_names(child.id());
    assert_eq!(names, vec!["vcpu0".to_string()]);

    // Every container create: vm.resize with desired_vcpus, even unchanged.
    for _ in 0..2 {
        kata_ok(
            &api.put("vm.resize", Some(r#"{"desired_vcpus":1}"#)),
            "vm.resize (unchanged)",
        );
    }
    kata_ok(
        &api.put("vm.resize", Some(r#"{"desired_vcpus":2}"#)),
        "vm.resize (grow)",
    );
    assert_eq!(api.get("vm.info").json()["config"]["cpus"]["boot_vcpus"], 2);

    kata_ok(&api.put("vm.pause", None), "vm.pause");
    assert_eq!(api.get("vm.info").json()["state"], "Paused");
    // kata's balloon (free page reporting only) and entropy device are real devices.
    let balloon = &api.get("vm.counters").json()["balloon"];
    assert_eq!(balloon["target_bytes"], 0, "{balloon}");
    let info = api.get("vm.info").json();
    assert_eq!(info["config"]["rng"]["src"], "/dev/urandom", "{info}");
    kata_ok(&api.put("vm.resume", None), "vm.resume");
    assert_eq!(api.get("vm.info").json()["state"], "Running");

    // Stop: ping, then vmm.shutdown, answered before the process exits; SIGKILL after 3 s.
    kata_ok(&api.get("vmm.ping"), "vmm.ping");
    let r = api.put("vmm.shutdown", None);
    kata_ok(&r, "vmm.shutdown");
    let status = wait_with_timeout(&mut child, Duration::from_secs(3));
    if status.is_none() {
        let _ = child.kill();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "VMM did not exit cleanly within kata's 3 s"
    );

    // The fields Revenant does not implement were named in a warning, not rejected.
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    for field in ["platform", "tdx"] {
        assert!(log.contains(field), "no warning naming {field}");
    }
}
