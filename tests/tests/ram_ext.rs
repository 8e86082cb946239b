//! RAM extension, first part: a VM in Sz gives its guest RAM to real memory servers (r = 2),
//! the host keeps almost nothing of it, one server dies, and after the wake every page comes
//! back intact on first touch.

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
    let faults = vmm.client.get("vm.counters").json()["memory_faults"]
        .as_u64()
        .unwrap();
    assert!(
        faults >= 16384 / 16,
        "only {faults} faults brought 64 MiB back"
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
