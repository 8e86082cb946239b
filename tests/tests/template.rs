//! Templates: snapshot a paused test guest, fork clones from it in fresh VMM processes, and
//! refuse broken templates with a clear error (tier 2, real KVM).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

const LIMIT: Duration = Duration::from_secs(30);

fn wait_reports(vmm: &mut ApiVmm, at_least: usize) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let r = vmm.reports();
        if r.len() >= at_least {
            return r;
        }
        assert!(
            start.elapsed() < LIMIT,
            "only {} reports: {}",
            r.len(),
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Boots the ticker guest, lets it report a few times, pauses and snapshots it into
/// `<tmp>/template`. Returns the VMM (kept alive) and the last value reported before the pause.
fn make_template(dir: &Path) -> (ApiVmm, u64) {
    let mut vmm = ApiVmm::start();
    let image = write_guest(dir, "ticker.bin", &guests::long_mode_ticker(24));
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_reports(&mut vmm, 3);
    // Snapshot of a running VM is refused: it must be paused.
    let url = format!(
        r#"{{"destination_url":"file://{}"}}"#,
        dir.join("template").display()
    );
    assert_eq!(vmm.client.put("vm.snapshot", Some(&url)).status, 409);
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let n = *vmm.reports().last().unwrap();
    let r = vmm.client.put("vm.snapshot", Some(&url));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    (vmm, n)
}

/// Restores the template in a fresh VMM with `mode`, checks it is Paused, resumes it and
/// returns its first reports.
fn fork(template: &Path, mode: &str) -> (ApiVmm, Vec<u64>) {
    fork_until(template, mode, 2)
}

/// Like [`fork`], waiting for `reports` reports.
fn fork_until(template: &Path, mode: &str, reports: usize) -> (ApiVmm, Vec<u64>) {
    fork_into(ApiVmm::start(), template, mode, reports)
}

/// Restores the template into `clone` (a VMM just started) and waits for `reports` reports.
fn fork_into(mut clone: ApiVmm, template: &Path, mode: &str, reports: usize) -> (ApiVmm, Vec<u64>) {
    let body = format!(
        r#"{{"source_url":"file://{}","memory_restore_mode":"{mode}"}}"#,
        template.display()
    );
    let r = clone.client.put("vm.restore", Some(&body));
    assert_eq!(
        r.status,
        204,
        "{}: {}",
        String::from_utf8_lossy(&r.body),
        clone.stderr()
    );
    let info = clone.client.get("vm.info").json();
    assert_eq!(info["state"], "Paused");
    assert!(
        info["config"]["memory"]["size"]
            .as_u64()
            .is_some_and(|s| s > 0),
        "{info}"
    );
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let r = wait_reports(&mut clone, reports);
    (clone, r)
}

fn file_digest(path: &Path) -> (u64, u64) {
    // FNV-1a over the file: enough to see a single changed byte.
    let bytes = std::fs::read(path).unwrap();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    (bytes.len() as u64, h)
}

#[test]
fn cow_clones_continue_from_the_snapshot_independently() {
    if !kvm_available("cow_clones_continue_from_the_snapshot_independently") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_source, n) = make_template(dir.path());
    let template = dir.path().join("template");
    let memory = template.join("memory.bin");
    let before = file_digest(&memory);
    let clones: Vec<_> = (0..3).map(|_| fork(&template, "cow")).collect();
    for (clone, r) in &clones {
        // Each clone's first report continues the template's count: it resumed from N.
        assert_eq!(
            &r[..2],
            &[n + 1, n + 2],
            "clone {}: {r:?}",
            clone.child.id()
        );
    }
    // Let the clones run on (each writes its own stack and registers) and check again.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        file_digest(&memory),
        before,
        "the template memory file changed"
    );
}

#[test]
fn clones_restored_into_a_prepared_vm_continue_from_the_snapshot() {
    if !kvm_available("clones_restored_into_a_prepared_vm_continue_from_the_snapshot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_source, n) = make_template(dir.path());
    let template = dir.path().join("template");
    // The fork pool: each VMM made its KVM VM and reserved the template's 32 MiB at start.
    for mode in ["cow", "copy", "ondemand"] {
        let pooled = ApiVmm::start_with(&["--prepare-vm-memory", "32M"]);
        let (clone, r) = fork_into(pooled, &template, mode, 2);
        assert_eq!(&r[..2], &[n + 1, n + 2], "{mode}: {r:?}");
        assert!(
            clone.stderr().contains("into the prepared VM"),
            "{mode}: the prepared VM was not used: {}",
            clone.stderr()
        );
    }
    // A VMM prepared for another size restores into a fresh VM instead, just as well.
    let other = ApiVmm::start_with(&["--prepare-vm-memory", "64M"]);
    let (clone, r) = fork_into(other, &template, "cow", 2);
    assert_eq!(&r[..2], &[n + 1, n + 2], "{r:?}");
    assert!(
        clone.stderr().contains("prepared VM not used"),
        "{}",
        clone.stderr()
    );
}

#[test]
fn ondemand_and_copy_clones_continue_from_the_snapshot() {
    if !kvm_available("ondemand_and_copy_clones_continue_from_the_snapshot") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_source, n) = make_template(dir.path());
    let template = dir.path().join("template");
    for mode in ["ondemand", "copy"] {
        let (_clone, r) = fork(&template, mode);
        assert_eq!(&r[..2], &[n + 1, n + 2], "{mode}: {r:?}");
    }
}

fn corrupt(template: &Path, how: &str) -> PathBuf {
    let copy = template.with_file_name(format!("broken-{how}"));
    std::fs::create_dir_all(&copy).unwrap();
    for f in ["state.bin", "memory.bin"] {
        std::fs::copy(template.join(f), copy.join(f)).unwrap();
    }
    let state = copy.join("state.bin");
    let mut bytes = std::fs::read(&state).unwrap();
    match how {
        "truncated" => bytes.truncate(bytes.len() / 2),
        "flipped" => {
            let last = bytes.len() - 1;
            bytes[last] ^= 0x40;
        }
        // Version field right after the 8-byte magic; its header checksum fails too, so the
        // error must still be a clear refusal.
        "future-version" => bytes[8] = 0x7f,
        "no-memory" => std::fs::remove_file(copy.join("memory.bin")).unwrap(),
        _ => unreachable!(),
    }
    std::fs::write(&state, bytes).unwrap();
    copy
}

#[test]
fn broken_templates_are_refused_naming_the_problem() {
    if !kvm_available("broken_templates_are_refused_naming_the_problem") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_source, _) = make_template(dir.path());
    let template = dir.path().join("template");
    for how in ["truncated", "flipped", "future-version", "no-memory"] {
        let broken = corrupt(&template, how);
        let mut vmm = ApiVmm::start();
        let body = format!(r#"{{"source_url":"file://{}"}}"#, broken.display());
        let r = vmm.client.put("vm.restore", Some(&body));
        assert_eq!(r.status, 400, "{how}: {}", String::from_utf8_lossy(&r.body));
        let json = r.json();
        assert_eq!(json["field"], "source_url", "{how}: {json}");
        assert!(json["reason"].as_str().unwrap().len() > 10, "{how}: {json}");
        // Nothing half-running: no VM, the VMM still answers, and a good restore works after.
        assert_eq!(vmm.client.get("vm.info").status, 409, "{how}");
        let good = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
        assert_eq!(
            vmm.client.put("vm.restore", Some(&good)).status,
            204,
            "{how}: {}",
            vmm.stderr()
        );
    }
    let mut vmm = ApiVmm::start();
    let r = vmm
        .client
        .put("vm.restore", Some(r#"{"source_url":"http://example/x"}"#));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("source_url"))
    );
}

#[test]
fn every_clone_gets_a_new_vm_generation_id() {
    if !kvm_available("every_clone_gets_a_new_vm_generation_id") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut source = ApiVmm::start();
    let image = write_guest(
        dir.path(),
        "watcher.bin",
        &guests::long_mode_vmgenid_watcher(0),
    );
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(source.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    let template = dir.path().join("template");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    assert_eq!(source.client.put("vm.snapshot", Some(&url)).status, 204);
    // The source keeps its ID: resumed, it sees no change and reports nothing.
    assert_eq!(source.client.put("vm.resume", None).status, 204);
    // The clone's first report is the watcher noticing a new ID, written at restore.
    let (_clone, r) = fork_until(&template, "cow", 1);
    assert_eq!(r, vec![u64::from(guests::VMGENID_CHANGED)]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        source.reports().is_empty(),
        "the source VM's generation ID changed"
    );
}

#[test]
fn remote_clones_fault_their_memory_in_from_memory_servers() {
    if !kvm_available("remote_clones_fault_their_memory_in_from_memory_servers") {
        return;
    }
    use revenant_tests::memd::{token_file, Memd};
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let mut servers = [Memd::start(&token), Memd::start(&token)];
    let list = format!("{},{}", servers[0].endpoint, servers[1].endpoint);

    // The ticker guest, snapshotted with its memory uploaded to both servers (r = 2).
    let mut vmm = ApiVmm::start();
    let image = write_guest(dir.path(), "ticker.bin", &guests::long_mode_ticker(24));
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_reports(&mut vmm, 3);
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let n = *vmm.reports().last().unwrap();
    let template = dir.path().join("template");
    let snap = format!(
        r#"{{"destination_url":"file://{}","memory_servers":{{"servers":"{list}","token_file":"{}","replicas":2}}}}"#,
        template.display(),
        token.display()
    );
    let r = vmm.client.put("vm.snapshot", Some(&snap));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    // The clone must not read the local memory file: take it away.
    std::fs::remove_file(template.join("memory.bin")).unwrap();

    let (_clone, r) = fork(&template, "remote");
    assert_eq!(&r[..2], &[n + 1, n + 2], "{r:?}");
    // One memory server dies: the replicas on the other serve the next clone.
    servers[0].kill9();
    let (_clone2, r) = fork(&template, "remote");
    assert_eq!(&r[..2], &[n + 1, n + 2], "after kill -9: {r:?}");

    // Bad memory_servers input is refused naming the field.
    let bad = format!(
        r#"{{"destination_url":"file://{}","memory_servers":{{"servers":"carrier-pigeon","token_file":"{}"}}}}"#,
        dir.path().join("t2").display(),
        token.display()
    );
    let r = vmm.client.put("vm.snapshot", Some(&bad));
    assert_eq!(
        (r.status, r.json()["field"].as_str()),
        (400, Some("memory_servers.servers"))
    );
}

#[test]
fn a_recorded_working_set_spares_later_clones_their_faults() {
    if !kvm_available("a_recorded_working_set_spares_later_clones_their_faults") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut source = ApiVmm::start();
    // 16 MiB of data; after a fork the guest reads 8 MiB of it before reporting.
    let image = write_guest(
        dir.path(),
        "toucher.bin",
        &guests::long_mode_vmgenid_toucher(4096, 2048),
    );
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(source.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    let template = dir.path().join("template");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    assert_eq!(source.client.put("vm.snapshot", Some(&url)).status, 204);

    let faults = |vmm: &mut ApiVmm| {
        vmm.client.get("vm.counters").json()["memory_faults"]
            .as_u64()
            .unwrap()
    };
    let (mut first, _) = fork_until(&template, "ondemand", 1);
    let first_faults = faults(&mut first);
    // 2048 pages touched, fault-around loads up to 16 per fault.
    assert!(first_faults >= 2048 / 16, "only {first_faults} faults");
    let r = first.client.put("vm.save-working-set", None);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.json()["pages"].as_u64().unwrap() >= first_faults);

    let (mut second, _) = fork_until(&template, "ondemand", 1);
    let second_faults = faults(&mut second);
    assert!(
        second_faults * 10 <= first_faults,
        "{second_faults} faults with the working set vs {first_faults} without"
    );

    // Only on-demand clones have a working set to save.
    let (mut cow, _) = fork_until(&template, "cow", 1);
    assert_eq!(cow.client.put("vm.save-working-set", None).status, 409);
}

#[test]
fn a_restored_clone_is_told_of_its_new_generation_id_through_the_ged() {
    if !kvm_available("a_restored_clone_is_told_of_its_new_generation_id_through_the_ged") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut source = ApiVmm::start();
    let image = write_guest(dir.path(), "ged.bin", &guests::long_mode_ged_poller());
    let body = test_guest_config(&image, "long", 16777216, "Off", "");
    assert_eq!(source.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    wait_reports(&mut source, 1);
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    let template = dir.path().join("template");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    assert_eq!(source.client.put("vm.snapshot", Some(&url)).status, 204);
    // The poller reads the GED register in a loop; in the clone it finds the VMGenID bit
    // (platform::GED_EVENT_VMGENID), reports it and resets (so read its report from the
    // VMM's log: a VM that reset has no counters any more).
    let mut clone = ApiVmm::start();
    let body = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
    assert_eq!(clone.client.put("vm.restore", Some(&body)).status, 204);
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let start = Instant::now();
    while clone.client.get("vm.info").json()["state"] != "Shutdown" {
        assert!(
            start.elapsed() < LIMIT,
            "the clone never saw the GED event: {}",
            clone.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        revenant_tests::vmm_process::test_reports(&clone.stderr()),
        vec![1 << 3]
    );
    // The source keeps its ID and gets no event: it is still polling.
    assert_eq!(source.client.put("vm.resume", None).status, 204);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(source.client.get("vm.info").json()["state"], "Running");
}

/// A template with a virtio-blk disk (a raw temp file) and a vsock device forks like one
/// without: the clone rebuilds both devices (transport and queue state from the state
/// file, the disk reopened and the vsock socket bound from the template's config) and
/// continues the count.
///
/// The test guest has no virtio drivers, so both transports are saved and restored in their
/// reset state; restoring a started device (DRIVER_OK, queues in use, TRANSPORT_RESET to the
/// vsock driver) is covered by the tier-1 tests in `vmm/src/devices/virtio/restore/tests.rs`.
///
/// A clone restored without an identity listens on the template's vsock socket path, so
/// it is refused naming `vsock.socket` while the template's VMM still listens there; with
/// its own `vsock {cid, socket}` in `vm.restore`, two clones run beside the template, each
/// on its own socket; without, a clone restores once the template's VMM is gone.
#[test]
fn templates_with_a_disk_and_vsock_fork_cow_clones() {
    if !kvm_available("templates_with_a_disk_and_vsock_fork_cow_clones") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.raw");
    std::fs::write(&disk, vec![0x5a; 1 << 20]).unwrap();
    let socket = dir.path().join("v.sock");
    let mut source = ApiVmm::start();
    let image = write_guest(dir.path(), "ticker.bin", &guests::long_mode_ticker(24));
    let devices = format!(
        r#""disks":[{{"path":"{}"}}],"vsock":{{"cid":3,"socket":"{}"}}"#,
        disk.display(),
        socket.display()
    );
    let body = test_guest_config(&image, "long", 33554432, "Off", &devices);
    let r = source.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(source.client.put("vm.boot", None).status, 204);
    wait_reports(&mut source, 3);
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    let n = *source.reports().last().unwrap();
    let template = dir.path().join("template");
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    let r = source.client.put("vm.snapshot", Some(&url));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));

    // The template's VMM still listens on the socket: the clone is refused, naming it.
    let mut early = ApiVmm::start();
    let body = format!(
        r#"{{"source_url":"file://{}","memory_restore_mode":"cow"}}"#,
        template.display()
    );
    let r = early.client.put("vm.restore", Some(&body));
    let text = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 400, "{text}");
    assert!(text.contains("vsock.socket"), "{text}");

    // Clones with their own identity run while the template's VMM still listens.
    let mut clones = Vec::new();
    for (cid, name) in [(4u64, "clone-a.sock"), (5, "clone-b.sock")] {
        let path = dir.path().join(name);
        let mut clone = ApiVmm::start();
        let body = format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"cow","vsock":{{"cid":{cid},"socket":"{}"}}}}"#,
            template.display(),
            path.display()
        );
        let r = clone.client.put("vm.restore", Some(&body));
        assert_eq!(
            r.status,
            204,
            "{}: {}",
            String::from_utf8_lossy(&r.body),
            clone.stderr()
        );
        assert_eq!(clone.client.put("vm.resume", None).status, 204);
        let r = wait_reports(&mut clone, 2);
        assert_eq!(&r[..2], &[n + 1, n + 2], "{r:?}");
        let info = clone.client.get("vm.info").json();
        assert_eq!(info["config"]["vsock"]["cid"], cid, "{info}");
        assert_eq!(
            info["config"]["vsock"]["socket"],
            path.display().to_string()
        );
        std::os::unix::net::UnixStream::connect(&path)
            .expect("the clone listens on its own socket");
        clones.push(clone);
    }
    // A reserved CID or a taken socket is refused, naming the field.
    for (vsock, field) in [
        (
            format!(
                r#"{{"cid":2,"socket":"{}"}}"#,
                dir.path().join("c.sock").display()
            ),
            "vsock.cid",
        ),
        (
            format!(
                r#"{{"cid":6,"socket":"{}"}}"#,
                dir.path().join("clone-a.sock").display()
            ),
            "vsock.socket",
        ),
    ] {
        let mut bad = ApiVmm::start();
        let body = format!(
            r#"{{"source_url":"file://{}","vsock":{vsock}}}"#,
            template.display()
        );
        let r = bad.client.put("vm.restore", Some(&body));
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["field"], field);
    }
    drop(clones);

    assert_eq!(source.client.put("vmm.shutdown", None).status, 204);
    source
        .wait_exit(Duration::from_secs(5))
        .expect("the template's VMM exits");
    let (clone, r) = fork(&template, "cow");
    assert_eq!(&r[..2], &[n + 1, n + 2], "{r:?}");
    let mut clone = clone;
    let info = clone.client.get("vm.info").json();
    assert_eq!(
        info["config"]["disks"][0]["path"],
        disk.display().to_string(),
        "{info}"
    );
    assert_eq!(info["config"]["vsock"]["cid"], 3, "{info}");
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::symlink_metadata(&socket).expect("the clone listens on the socket");
    assert!(meta.file_type().is_socket());
    let _client = std::os::unix::net::UnixStream::connect(&socket).expect("the clone accepts");
}
