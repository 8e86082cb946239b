//! RAM extension with real memory servers (r = 2): a running VM kept within a local budget
//! much smaller than its RAM still reads back everything it wrote, also when one server dies;
//! a VM in Sz gives its guest RAM to the servers, the host keeps almost nothing of it, one
//! server dies, and after the wake every page comes back intact on first touch.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::memd::{token_file, Memd};
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{write_guest, ApiVmm};

const GUEST: u64 = 256 << 20;

fn wait_more_reports(vmm: &mut ApiVmm, than: usize) -> Vec<u64> {
    let start = Instant::now();
    loop {
        let r = vmm.reports();
        if r.len() > than {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no report after {than}: {}",
            vmm.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn a_zombie_vm_gives_its_ram_to_memory_servers_and_gets_it_back() {
    if !kvm_available("a_zombie_vm_gives_its_ram_to_memory_servers_and_gets_it_back") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let mut servers = [Memd::start(&token), Memd::start(&token)];
    let mut vmm = ApiVmm::start();
    let image = write_guest(
        dir.path(),
        "verify.bin",
        &guests::long_mode_fill_and_verify(16384),
    ); // 64 MiB
    let body = format!(
        r#"{{"memory":{{"size":{GUEST},"remote":{{"servers":"{},{}","token_file":"{}","replicas":2}}}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}}}}"#,
        servers[0].endpoint,
        servers[1].endpoint,
        token.display(),
        image.display()
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let r = wait_more_reports(&mut vmm, 1);
    assert!(r.iter().all(|&m| m == 0), "mismatches before Sz: {r:?}");
    let pid = vmm.child.id();
    let before = rss_anon_kib(pid);
    assert!(
        before > 64 << 10,
        "the guest's 64 MiB should be resident: {before} KiB"
    );

    assert_eq!(
        vmm.client.put("vm.sleep", Some(r#"{"state":"sz"}"#)).status,
        204
    );
    let asleep = rss_anon_kib(pid);
    // ZombieLand: the host keeps under 10% of the guest's size while the VM is a zombie.
    assert!(
        asleep < (GUEST >> 10) / 10,
        "RssAnon {asleep} KiB in Sz (was {before} KiB)"
    );
    let counters = vmm.client.get("vm.counters").json();
    assert!(
        counters["remote_bytes_out"].as_u64().unwrap() >= 64 << 20,
        "{counters}"
    );

    // One of the two memory servers dies while the VM is a zombie: every page has a replica
    // on the other, so the wake must still bring back exactly what the guest wrote.
    servers[0].kill9();
    let seen = vmm.reports().len();
    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    // Two full passes after the wake: every word came back from the servers intact.
    let r = wait_more_reports(&mut vmm, seen + 1);
    assert!(
        r[seen..].iter().all(|&m| m == 0),
        "mismatches after the wake: {:?}",
        &r[seen..]
    );
    let counters = vmm.client.get("vm.counters").json();
    let faults = counters["memory_faults"].as_u64().unwrap();
    let bytes_in = counters["ram_ext"]["bytes_in"].as_u64().unwrap();
    assert!(
        faults > 0 && bytes_in >= 64 << 20,
        "64 MiB must come back from the servers: {counters}"
    );
    let evicted = vmm
        .stderr()
        .lines()
        .find(|l| l.contains("Sz:"))
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "RssAnon {before} KiB -> {asleep} KiB in Sz; {faults} faults after the wake; {evicted}"
    );
}

/// Boots a fill-and-verify guest over `pages` pages with `memory.remote` on `servers` and the
/// given extra `memory.remote` fields.
fn boot_remote(
    vmm: &mut ApiVmm,
    dir: &std::path::Path,
    servers: &[&Memd],
    pages: u64,
    extra: &str,
) {
    let token = token_file(dir);
    let image = write_guest(dir, "verify.bin", &guests::long_mode_fill_and_verify(pages));
    let list: Vec<String> = servers.iter().map(|m| m.endpoint.to_string()).collect();
    let body = format!(
        r#"{{"memory":{{"size":{GUEST},"remote":{{"servers":"{}","token_file":"{}","replicas":{}{extra}}}}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}}}}"#,
        list.join(","),
        token.display(),
        servers.len().min(2),
        image.display()
    );
    let r = vmm.client.put("vm.create", Some(&body));
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let r = vmm.client.put("vm.boot", None);
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
}

/// Nearly all of the 256 MiB guest: from the workload base to 8 MiB below the top.
const BUDGET_TEST_PAGES: u64 = (GUEST - (10 << 20)) / 4096;
const BUDGET: u64 = 32 << 20;

fn ram_ext_counters(vmm: &mut ApiVmm) -> serde_json::Value {
    vmm.client.get("vm.counters").json()["ram_ext"].clone()
}

#[test]
fn a_vm_over_its_local_budget_reads_back_everything_it_wrote() {
    if !kvm_available("a_vm_over_its_local_budget_reads_back_everything_it_wrote") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let mut servers = [Memd::start(&token), Memd::start(&token)];
    let mut vmm = ApiVmm::start();
    boot_remote(
        &mut vmm,
        dir.path(),
        &[&servers[0], &servers[1]],
        BUDGET_TEST_PAGES,
        &format!(r#","local_budget":{BUDGET}"#),
    );
    // A full pass: every page was written once and read back through a 32 MiB budget, so
    // most of them went to the servers and came back.
    let booted = Instant::now();
    let r = wait_more_reports(&mut vmm, 0);
    eprintln!("fill + first pass: {:?}", booted.elapsed());
    assert!(r.iter().all(|&m| m == 0), "mismatches: {r:?}");
    let c = ram_ext_counters(&mut vmm);
    eprintln!("{c}");
    let n = |k: &str| c[k].as_u64().unwrap();
    assert!(n("evicted_pages") > BUDGET_TEST_PAGES / 2, "{c}");
    assert!(n("remote_faults") > 0 && n("written_back_pages") > 0, "{c}");
    assert!(
        n("resident_pages") <= BUDGET / 4096 + 256 + 64,
        "resident over budget: {c}"
    );
    let pid = vmm.child.id();
    let rss = rss_anon_kib(pid);
    assert!(
        rss < (BUDGET >> 10) + (40 << 10),
        "RssAnon {rss} KiB with a 32 MiB budget"
    );

    // One server dies: the other has every page, and the guest keeps verifying clean.
    servers[0].kill9();
    let killed = Instant::now();
    let seen = vmm.reports().len();
    let r = wait_more_reports(&mut vmm, seen + 1);
    eprintln!("two passes after the kill: {:?}", killed.elapsed());
    assert!(
        r[seen..].iter().all(|&m| m == 0),
        "mismatches after a server died: {:?}",
        &r[seen..]
    );
    assert!(
        n("remote_faults")
            < ram_ext_counters(&mut vmm)["remote_faults"]
                .as_u64()
                .unwrap()
    );
}

#[test]
fn a_bad_local_budget_is_refused_with_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut vmm = ApiVmm::start();
    let token = token_file(dir.path());
    for (remote, field) in [
        (
            r#""servers":"tcp://127.0.0.1:1","token_file":"T","local_budget":4097"#,
            "memory.remote.local_budget",
        ),
        (
            r#""servers":"tcp://127.0.0.1:1","token_file":"T","local_budget":1073741824"#,
            "memory.remote.local_budget",
        ),
        (r#""servers":"","token_file":"T""#, "memory.remote.servers"),
        (
            r#""servers":"tcp://127.0.0.1:1","directory":["http://127.0.0.1:2379"],"token_file":"T""#,
            "memory.remote.directory",
        ),
        (
            r#""servers":"tcp://127.0.0.1:1","token_file":"T","controller":{"stall_target_pct":0}"#,
            "memory.remote.controller.stall_target_pct",
        ),
    ] {
        let body = format!(
            r#"{{"memory":{{"size":{GUEST},"remote":{{{}}}}}}}"#,
            remote.replace('T', &token.display().to_string())
        );
        let r = vmm.client.put("vm.create", Some(&body));
        assert_eq!(
            r.status,
            400,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(
            String::from_utf8_lossy(&r.body).contains(field),
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
    }
}

/// Pages the guest puts into its balloon are given up by the RAM extension too: dropped
/// locally and never shipped (`ram_ext.discarded_pages`), reading as zero afterwards.
#[test]
fn ballooned_pages_are_discarded_by_the_ram_extension() {
    if !kvm_available("ballooned_pages_are_discarded_by_the_ram_extension") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let server = Memd::start(&token);
    let mut vmm = ApiVmm::start();
    let memory = 32u64 << 20;
    let body_for = |image: &std::path::Path| {
        format!(
            r#"{{"memory":{{"size":{memory},"remote":{{"servers":"{}","token_file":"{}","local_budget":{memory}}}}},"payload":{{"test_guest":{{"path":"{}","mode":"long"}}}},"serial":{{"mode":"Off"}},"balloon":{{"size":0}}}}"#,
            server.endpoint,
            token.display(),
            image.display()
        )
    };
    let probe: revenant_vmm::config::VmConfig =
        serde_json::from_str(&body_for(std::path::Path::new("/x"))).unwrap();
    let base = revenant_vmm::vm::virtio_layout(&probe).unwrap()[0].base;
    let image = write_guest(
        dir.path(),
        "balloon.bin",
        &guests::long_mode_balloon_driver(base),
    );
    assert_eq!(
        vmm.client.put("vm.create", Some(&body_for(&image))).status,
        204
    );
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_more_reports(&mut vmm, 0);
    let before = vmm.client.get("vm.counters").json();
    let resident_before = before["ram_ext"]["resident_pages"].as_u64().unwrap();
    assert_eq!(
        vmm.client
            .put("vm.resize", Some(r#"{"desired_balloon":32768}"#))
            .status,
        204
    );
    // 0xa0, then num_pages (8), pages reading zero (8), 0xd0.
    let start = Instant::now();
    let r = loop {
        let r = vmm.reports();
        if r.len() >= 4 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{r:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r, vec![0xa0, 8, 8, 0xd0]);
    let c = vmm.client.get("vm.counters").json();
    let ram_ext = &c["ram_ext"];
    assert_eq!(ram_ext["discarded_pages"], 8, "{c}");
    assert_eq!(c["balloon"]["discarded_bytes"], 8 * 4096, "{c}");
    // Reading the discarded pages back mapped zero pages: no remote traffic for them.
    assert_eq!(ram_ext["remote_faults"], 0, "{c}");
    assert_eq!(ram_ext["bytes_out"], 0, "{c}");
    assert!(
        ram_ext["resident_pages"].as_u64().unwrap() <= resident_before + 8,
        "{c}"
    );
}
