//! kata's VM-templating memory path, driven over the API as kata's factory does: a VM whose
//! RAM is a shared zone file (`memory {size: 0, zones: [{id, size, file, shared: true}]}`),
//! paused and snapshotted (the template's memory file is linked to the zone file, not
//! copied), then cow clones restored from it in fresh VMM processes (tier 2, real KVM). The
//! same for `memory.shared` without zones, whose RAM is an unnamed file in /dev/shm.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use revenant_tests::guests::{self, MEMORY_COUNTER_ADDR, MEMORY_COUNTER_MARK};
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{
    shared_zone_memory, test_guest_config_with_memory, write_guest, ApiVmm,
};

const LIMIT: Duration = Duration::from_secs(30);
const ZONE_SIZE: u64 = 32 << 20;

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

/// The memory counter guest's count and mark as the file backing its RAM holds them (the
/// single zone starts at guest address 0, so file offset = guest address).
fn counter_in(file: &Path) -> (u64, u64) {
    let f = std::fs::File::open(file).unwrap();
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, MEMORY_COUNTER_ADDR).unwrap();
    (
        u64::from_le_bytes(b[..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..].try_into().unwrap()),
    )
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

/// `vm.snapshot` of the paused VM into `template`, which must succeed; returns its time in ms.
fn snapshot_into(vmm: &mut ApiVmm, template: &Path) -> f64 {
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    let started = Instant::now();
    let r = vmm.client.put("vm.snapshot", Some(&url));
    let ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    ms
}

/// Boots the memory counter guest with its RAM in a shared zone file `zone`, checks the file
/// follows the guest's writes, pauses it. Returns the VMM and the last count reported.
fn boot_zone_vm(dir: &Path, zone: &Path) -> (ApiVmm, u64) {
    let mut vmm = ApiVmm::start();
    let image = write_guest(dir, "counter.bin", &guests::long_mode_memory_counter(24));
    let body = test_guest_config_with_memory(
        &image,
        "long",
        &shared_zone_memory(zone, ZONE_SIZE),
        "Off",
        "",
    );
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let info = vmm.client.get("vm.info").json();
    assert_eq!(info["state"], "Created");
    // kata needs memory_actual_size non-zero; size stays as given.
    assert_eq!(info["config"]["memory"]["size"], 0, "{info}");
    assert_eq!(info["memory_actual_size"], ZONE_SIZE, "{info}");
    assert_eq!(
        info["config"]["memory"]["zones"][0]["shared"], true,
        "{info}"
    );
    let r = vmm.client.put("vm.boot", None);
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(std::fs::metadata(zone).unwrap().len(), ZONE_SIZE);

    // The guest's RAM is the file: its count shows up there as it runs.
    let first = *wait_reports(&mut vmm, 2).last().unwrap();
    let (count, mark) = counter_in(zone);
    assert_eq!(
        mark, MEMORY_COUNTER_MARK,
        "the guest's marker is not in the zone file"
    );
    assert!(count >= first, "file count {count} < reported {first}");
    let later = *wait_reports(&mut vmm, (first + 3) as usize).last().unwrap();
    let (count2, _) = counter_in(zone);
    assert!(
        count2 > count && count2 >= later,
        "file count {count} -> {count2}, reported {later}"
    );

    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let n = *vmm.reports().last().unwrap();
    // Paused between its increment and its report, the guest's memory may be one ahead.
    let (paused, _) = counter_in(zone);
    assert!(
        paused == n || paused == n + 1,
        "file {paused}, reported {n}"
    );
    (vmm, n)
}

/// kata's factory: the template VM's RAM is a shared file; `vm.snapshot` links it as the
/// template's memory file (fast, no copy) and remaps the VM's RAM copy-on-write, so the
/// template VM may run on without changing the template, and clones restored from the
/// template continue from the snapshot independently, never touching the zone file.
#[test]
fn a_shared_zone_template_is_linked_and_forks_independent_clones() {
    if !kvm_available("a_shared_zone_template_is_linked_and_forks_independent_clones") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("memory");
    let (mut source, n) = boot_zone_vm(dir.path(), &zone);

    let template = dir.path().join("template");
    let snapshot_ms = snapshot_into(&mut source, &template);
    eprintln!("linked snapshot of a {ZONE_SIZE}-byte zone VM: {snapshot_ms:.2} ms");
    assert!(
        source
            .stderr()
            .contains("memory file linked to the guest's shared memory file"),
        "{}",
        source.stderr()
    );
    // Well under the copy of the guest's memory; the link itself is microseconds.
    assert!(snapshot_ms < 500.0, "snapshot took {snapshot_ms:.1} ms");
    let memory = template.join("memory.bin");
    let (m, z) = (
        std::fs::metadata(&memory).unwrap(),
        std::fs::metadata(&zone).unwrap(),
    );
    assert_eq!(
        (m.dev(), m.ino()),
        (z.dev(), z.ino()),
        "the template's memory file is not the zone file"
    );
    let before = file_digest(&memory);

    // The template VM runs on in private copies of its pages: the template stays as saved.
    assert_eq!(source.client.put("vm.resume", None).status, 204);
    let r = wait_reports(&mut source, n as usize + 3);
    let expected: Vec<u64> = (1..=r.len() as u64).collect();
    assert_eq!(r, expected, "the template VM's count after the snapshot");
    assert_eq!(source.client.put("vm.pause", None).status, 204);
    assert_eq!(
        file_digest(&memory),
        before,
        "the running VM changed the template"
    );

    let mut clones = Vec::new();
    // The second clone comes from the fork pool (KVM VM and memory made ahead): a zone
    // template has the layout of any VM of its size.
    for pooled in [false, true] {
        let mut clone = if pooled {
            ApiVmm::start_with(&["--prepare-vm-memory", "32M"])
        } else {
            ApiVmm::start()
        };
        let body = format!(
            r#"{{"source_url":"file://{}","memory_restore_mode":"cow"}}"#,
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
        assert_eq!(info["state"], "Paused", "{info}");
        assert_eq!(info["memory_actual_size"], ZONE_SIZE, "{info}");
        let zone0 = &info["config"]["memory"]["zones"][0];
        assert_eq!(zone0["id"], "mem0", "{info}");
        assert_eq!(zone0["size"], ZONE_SIZE, "{info}");
        assert!(
            zone0.get("file").is_none(),
            "the clone kept the zone file: {info}"
        );
        assert_eq!(zone0["shared"], false, "{info}");
        if pooled {
            assert!(
                clone.stderr().contains("into the prepared VM"),
                "{}",
                clone.stderr()
            );
        }
        assert_eq!(clone.client.put("vm.resume", None).status, 204);
        clones.push(clone);
    }
    for clone in &mut clones {
        let r = wait_reports(clone, 2);
        assert_eq!(
            &r[..2],
            &[n + 1, n + 2],
            "clone {}: {r:?}",
            clone.child.id()
        );
    }
    // Let them run on: each counts in its own copy of the page (no clone sees another's
    // increments, which would make its count skip).
    std::thread::sleep(Duration::from_millis(300));
    for clone in &mut clones {
        let r = clone.reports();
        let expected: Vec<u64> = (n + 1..=n + r.len() as u64).collect();
        assert_eq!(r, expected, "clone {}", clone.child.id());
    }
    assert_eq!(
        file_digest(&memory),
        before,
        "the template memory file changed"
    );
    assert_eq!(counter_in(&zone).1, MEMORY_COUNTER_MARK);

    // kata stops the factory VM after saving; a boot on the same zone file would write into
    // the template, so it is refused.
    assert_eq!(source.client.put("vm.shutdown", None).status, 204);
    let r = source.client.put("vm.boot", None);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.json()["reason"]
            .as_str()
            .unwrap()
            .contains("memory.zones[0].file"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(source.client.put("vmm.shutdown", None).status, 204);
    source
        .wait_exit(Duration::from_secs(5))
        .expect("the template's VMM exits");
    assert_eq!(file_digest(&memory), before);
    drop(clones);
}

/// A zone file on another filesystem than the template cannot be linked: the memory file is
/// a copy, and the template VM may run on (its writes no longer reach the template).
#[test]
fn a_zone_file_on_another_filesystem_is_copied_and_the_vm_runs_on() {
    if !kvm_available("a_zone_file_on_another_filesystem_is_copied_and_the_vm_runs_on") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        revenant_tests::skip::skip(
            "a_zone_file_on_another_filesystem_is_copied_and_the_vm_runs_on",
            "no /dev/shm",
        );
        return;
    };
    if std::fs::metadata(shm.path()).unwrap().dev() == std::fs::metadata(dir.path()).unwrap().dev()
    {
        revenant_tests::skip::skip(
            "a_zone_file_on_another_filesystem_is_copied_and_the_vm_runs_on",
            "/dev/shm and the temporary directory are one filesystem",
        );
        return;
    }
    let zone = shm.path().join("memory");
    let (mut source, n) = boot_zone_vm(dir.path(), &zone);
    let template = dir.path().join("template");
    snapshot_into(&mut source, &template);
    assert!(!source.stderr().contains("memory file linked"));
    let memory = template.join("memory.bin");
    let before = file_digest(&memory);
    // Only the guest's data was copied: the rest of the 32 MiB stays holes.
    let allocated = std::fs::metadata(&memory).unwrap().blocks() * 512;
    assert!(allocated < ZONE_SIZE / 2, "{allocated} bytes allocated");

    assert_eq!(source.client.put("vm.resume", None).status, 204);
    let seen = source.reports().len();
    wait_reports(&mut source, seen + 2);
    assert_eq!(
        file_digest(&memory),
        before,
        "the running VM changed the template"
    );
    let mut clone = ApiVmm::start();
    let body = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
    assert_eq!(clone.client.put("vm.restore", Some(&body)).status, 204);
    assert_eq!(clone.client.put("vm.resume", None).status, 204);
    let r = wait_reports(&mut clone, 2);
    assert_eq!(&r[..2], &[n + 1, n + 2], "{r:?}");
}

/// `memory.shared: true` without zones (what kata sends with virtio-fs): the RAM is an
/// unnamed file in /dev/shm, so a snapshot into a template on /dev/shm is a link, not a copy
/// of the RAM. The VM then runs on; its next snapshot copies (the file is the first
/// template's now), and clones of either template continue from their own snapshot.
#[test]
fn shared_memory_is_snapshotted_by_link_and_the_vm_runs_on() {
    linked_snapshot_case(
        "shared_memory_is_snapshotted_by_link_and_the_vm_runs_on",
        r#","shared":true"#,
    );
}

/// Without `memory.shared` the RAM is a /dev/shm file too (it has room here), so the default
/// config gets linked snapshots.
#[test]
fn default_memory_is_snapshotted_by_link_and_the_vm_runs_on() {
    linked_snapshot_case(
        "default_memory_is_snapshotted_by_link_and_the_vm_runs_on",
        "",
    );
}

/// `memory.shared: false`: private anonymous RAM, copied into the template.
#[test]
fn private_memory_is_copied_into_the_template() {
    const TEST: &str = "private_memory_is_copied_into_the_template";
    if !kvm_available(TEST) {
        return;
    }
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        revenant_tests::skip::skip(TEST, "no /dev/shm to put the template on");
        return;
    };
    let (mut vmm, _dir) = counter_vm(r#","shared":false"#);
    wait_reports(&mut vmm, 2);
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    snapshot_into(&mut vmm, &shm.path().join("t"));
    let file = shm.path().join("t/memory.bin");
    assert_eq!(counter_in(&file).1, MEMORY_COUNTER_MARK);
    assert!(!vmm.stderr().contains("linked"), "{}", vmm.stderr());
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    let r = wait_reports(&mut vmm, 4);
    assert_eq!(r, vec![1, 2, 3, 4]);
    assert_eq!(vmm.client.put("vmm.shutdown", None).status, 204);
}

/// A VMM with the counter guest created (memory `extra` JSON fields after its size), booted.
fn counter_vm(extra: &str) -> (ApiVmm, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        dir.path(),
        "counter.bin",
        &guests::long_mode_memory_counter(24),
    );
    let memory = format!(r#"{{"size":{ZONE_SIZE}{extra}}}"#);
    let body = test_guest_config_with_memory(&image, "long", &memory, "Off", "");
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    (vmm, dir)
}

/// The counter guest with `memory_extra` is snapshotted into /dev/shm by a link, runs on
/// without changing the template, is snapshotted again by a copy, and both templates fork.
fn linked_snapshot_case(test: &str, memory_extra: &str) {
    if !kvm_available(test) {
        return;
    }
    let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
        revenant_tests::skip::skip(test, "no /dev/shm to put the templates on");
        return;
    };
    let (mut vmm, _dir) = counter_vm(memory_extra);
    // vm.info echoes memory.shared as given (absent when unset).
    let info = vmm.client.get("vm.info").json();
    let shared = &info["config"]["memory"]["shared"];
    assert_eq!(shared.as_bool(), (!memory_extra.is_empty()).then_some(true));
    wait_reports(&mut vmm, 2);
    let snapshot = |vmm: &mut ApiVmm, name: &str, n: u64| {
        assert_eq!(vmm.client.put("vm.pause", None).status, 204);
        let template = shm.path().join(name);
        let ms = snapshot_into(vmm, &template);
        eprintln!("snapshot {name} of a {ZONE_SIZE}-byte shared-memory VM: {ms:.2} ms");
        let last = *vmm.reports().last().unwrap();
        assert!(last >= n, "reports went back: {last} < {n}");
        let file = template.join("memory.bin");
        // The memory file holds the count the guest had when paused (file offset = guest
        // address: the RAM starts at 0).
        let (count, mark) = counter_in(&file);
        assert_eq!(mark, MEMORY_COUNTER_MARK);
        assert!(
            count == last || count == last + 1,
            "file {count}, reported {last}"
        );
        (template, file, last)
    };

    let (first, first_file, n) = snapshot(&mut vmm, "first", 2);
    let linked = "memory file linked to the guest's shared memory file";
    assert_eq!(vmm.stderr().matches(linked).count(), 1, "{}", vmm.stderr());
    assert_eq!(std::fs::metadata(&first_file).unwrap().nlink(), 1);
    let before = file_digest(&first_file);

    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    let r = wait_reports(&mut vmm, n as usize + 3);
    let expected: Vec<u64> = (1..=r.len() as u64).collect();
    assert_eq!(r, expected, "the VM's count after its snapshot");
    let (second, second_file, n2) = snapshot(&mut vmm, "second", n + 3);
    // The second snapshot copied: the file under the first template is not this RAM.
    assert_eq!(vmm.stderr().matches(linked).count(), 1, "{}", vmm.stderr());
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&first_file), ino(&second_file));
    assert_eq!(
        file_digest(&first_file),
        before,
        "the VM changed the first template"
    );

    for (template, from) in [(&first, n), (&second, n2)] {
        let mut clone = ApiVmm::start();
        let body = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
        let r = clone.client.put("vm.restore", Some(&body));
        assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(clone.client.put("vm.resume", None).status, 204);
        let r = wait_reports(&mut clone, 2);
        assert_eq!(
            &r[..2],
            &[from + 1, from + 2],
            "clone of {}: {r:?}",
            template.display()
        );
    }
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    assert_eq!(vmm.client.put("vmm.shutdown", None).status, 204);
    vmm.wait_exit(Duration::from_secs(5))
        .expect("the VMM exits");
    assert_eq!(file_digest(&first_file), before);
}

#[test]
fn bad_zone_configs_are_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "counter.bin",
        &guests::long_mode_memory_counter(24),
    );
    let file = dir.path().join("memory");
    let f = file.display();
    let missing = dir.path().join("no/such/dir/memory");
    let m = missing.display();
    let cases = [
        (r#"{"size":0}"#.to_string(), "memory.size"),
        (
            format!(
                r#"{{"size":33554432,"zones":[{{"id":"mem0","size":33554432,"file":"{f}","shared":true}}]}}"#
            ),
            "memory.size",
        ),
        (
            r#"{"size":0,"zones":[{"id":"mem0","size":16777216},{"id":"mem0","size":16777216}]}"#
                .to_string(),
            "memory.zones[1].id",
        ),
        (
            r#"{"size":0,"zones":[{"id":"mem0","size":33554432,"shared":true}]}"#.to_string(),
            "memory.zones[0].shared",
        ),
        (
            format!(
                r#"{{"size":0,"zones":[{{"id":"mem0","size":33554432,"file":"{m}","shared":true}}]}}"#
            ),
            "memory.zones[0].file",
        ),
        (
            r#"{"size":0,"zones":[{"id":"mem0","size":33554433}]}"#.to_string(),
            "memory.zones[0].size",
        ),
    ];
    let mut vmm = ApiVmm::start();
    for (memory, field) in cases {
        let body = test_guest_config_with_memory(&image, "long", &memory, "Off", "");
        let r = vmm.client.put("vm.create", Some(&body));
        assert_eq!(
            r.status,
            400,
            "{memory}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["field"], field, "{memory}");
    }
    // Nothing was created by the refusals; a good config is accepted.
    assert_eq!(vmm.client.get("vm.info").status, 409);
    let body = test_guest_config_with_memory(
        &image,
        "long",
        &shared_zone_memory(&file, ZONE_SIZE),
        "Off",
        "",
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert!(
        !file.exists(),
        "the zone file is made at boot, not at create"
    );
}
