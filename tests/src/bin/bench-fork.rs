//! `scripts/bench fork`: fork latency from a template, per restore mode, with and without a
//! pool of ready VMM processes; snapshot time; private memory per idle clone.
//!
//! The template is the VMGenID-watcher guest (tests/src/guests.rs): it reports the moment it
//! sees a new generation ID, which every clone gets at restore. So "fork latency" is from
//! sending `vm.restore` (pool: the VMM process is already up, as in a kata factory) or from
//! spawning the process (no pool), through `vm.resume`, to the clone's first report on the
//! VMM's stderr: the clone has run guest instructions by then.
//!
//! `snapshot_ms` is the snapshot of a 128 MiB guest (120 MiB written) with the default memory
//! config: its RAM is an unnamed file in /dev/shm (`memory.shared` unset and /dev/shm has
//! room), which the snapshot links into the template; the VM could run on. The same guest
//! with `memory.shared: false` (private anonymous RAM, copied into the memory file) gives
//! `snapshot_anon_ms`; with `memory.shared: true` (what kata sends with virtio-fs)
//! `snapshot_shared_ms`; with its RAM a shared zone file on the template filesystem (kata's VM
//! factory) `snapshot_zone_ms`. `SNAPSHOT_ONLY=1` measures the snapshots and stops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use revenant_tests::bench::{env_count, percentile, BenchVmm as Vmm};
use revenant_tests::guests;
use revenant_tests::vmm_process::{shared_zone_memory, test_guest_config_with_memory};

const GUEST_MEMORY: u64 = 128 << 20;

/// Boots the watcher with `fill_mib` MiB of data, pauses it, snapshots it to `dir` (and
/// uploads its memory to `servers` when given: `memory_servers` JSON); returns the snapshot
/// time in ms.
fn make_template(work: &Path, dir: &Path, fill_mib: u64, servers: Option<&str>) -> f64 {
    make_template_of(
        work,
        dir,
        &guests::long_mode_vmgenid_watcher(fill_mib << 8),
        servers,
    )
}

/// [`make_template`] for any guest image.
fn make_template_of(work: &Path, dir: &Path, code: &[u8], servers: Option<&str>) -> f64 {
    let memory = format!(r#"{{"size":{GUEST_MEMORY}}}"#);
    make_template_in(work, dir, code, &memory, servers)
}

/// [`make_template_of`] with the guest's `memory` config given as JSON (kata's templating VM:
/// a shared zone file).
fn make_template_in(
    work: &Path,
    dir: &Path,
    code: &[u8],
    memory: &str,
    servers: Option<&str>,
) -> f64 {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("template")
        .to_string();
    let image = work.join(format!("{name}.bin"));
    std::fs::write(&image, code).expect("guest");
    let mut vmm = Vmm::spawn(work, &format!("template-{name}"));
    let body = test_guest_config_with_memory(&image, "long", memory, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    // Filling runs natively at CPL3; give it ample time to reach the watch loop.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let url = match servers {
        Some(s) => format!(
            r#"{{"destination_url":"file://{}","memory_servers":{s}}}"#,
            dir.display()
        ),
        None => format!(r#"{{"destination_url":"file://{}"}}"#, dir.display()),
    };
    let start = Instant::now();
    let r = vmm.client.put("vm.snapshot", Some(&url));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert_eq!(
        r.status,
        204,
        "snapshot: {}",
        String::from_utf8_lossy(&r.body)
    );
    ms
}

/// REAP-style working set: the first clone restored in `mode` faults its 32 MiB of post-fork
/// work in and saves its working set; later clones load it up front. Returns (first clone's
/// ms to done, its faults, later clones' p50 ms to done, their p50 faults).
fn working_set_run(work: &Path, template: &Path, mode: &str, later: usize) -> (f64, u64, f64, f64) {
    let run = |name: String| -> (f64, u64, Vmm) {
        let mut vmm = Vmm::spawn(work, &name);
        let sent = Instant::now();
        vmm.restore_and_resume(template, mode);
        let done = (vmm.first_report() - sent).as_secs_f64() * 1e3;
        let faults = vmm.client.get("vm.counters").json()["memory_faults"]
            .as_u64()
            .unwrap_or(0);
        (done, faults, vmm)
    };
    let (first_ms, first_faults, mut first) = run(format!("ws-{mode}-first"));
    let r = first.client.put("vm.save-working-set", None);
    assert_eq!(
        r.status,
        200,
        "save-working-set: {}",
        String::from_utf8_lossy(&r.body)
    );
    drop(first);
    let (mut ms, mut faults) = (Vec::new(), Vec::new());
    for i in 0..later {
        let (m, f, _vmm) = run(format!("ws-{mode}-{i}"));
        ms.push(m);
        faults.push(f as f64);
    }
    let (ms, faults) = (percentile(ms, 0.5), percentile(faults, 0.5));
    eprintln!("{mode} with 32 MiB of post-fork work: first clone {first_ms:.2} ms / {first_faults} faults; with its working set {ms:.2} ms / {faults} faults");
    // Later benchmark runs must start without it.
    let _ = std::fs::remove_file(template.join("working_set.json"));
    (first_ms, first_faults, ms, faults)
}

fn private_kib(pid: u32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup
        .lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

fn main() {
    let forks = env_count("FORKS", 200);
    let other = env_count("FORKS_OTHER", 30);
    let idle = env_count("IDLE_CLONES", 100);
    let shm = PathBuf::from(std::env::var("TEMPLATE_DIR").unwrap_or_else(|_| "/dev/shm".into()));
    let work = tempfile::tempdir().expect("tempdir");
    let templates = tempfile::tempdir_in(&shm).expect("template dir on tmpfs");
    let full = templates.path().join("full");
    let sparse = templates.path().join("sparse");

    eprintln!(
        "making templates (128 MiB guest; 120 MiB of data, and 0 MiB) in {}",
        shm.display()
    );
    let snapshot_ms = make_template(work.path(), &full, 120, None);
    let snapshot_sparse_ms = make_template(work.path(), &sparse, 0, None);
    // kata's templating VM: the same guest with its RAM in a shared zone file next to the
    // templates (one filesystem, so the snapshot links the file instead of copying it).
    let zone_file = templates.path().join("zone-memory");
    let snapshot_zone_ms = make_template_in(
        work.path(),
        &templates.path().join("zone"),
        &guests::long_mode_vmgenid_watcher(120 << 8),
        &shared_zone_memory(&zone_file, GUEST_MEMORY),
        None,
    );
    let zone_data_mib = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&zone_file).expect("zone file");
        (m.blocks() * 512) as f64 / f64::from(1 << 20)
    };
    eprintln!(
        "snapshot of a shared zone VM ({zone_data_mib:.1} MiB of its zone file written): {snapshot_zone_ms:.2} ms"
    );
    let [snapshot_shared_ms, snapshot_anon_ms] = ["true", "false"].map(|shared| {
        let ms = make_template_in(
            work.path(),
            &templates.path().join(format!("shared-{shared}")),
            &guests::long_mode_vmgenid_watcher(120 << 8),
            &format!(r#"{{"size":{GUEST_MEMORY},"shared":{shared}}}"#),
            None,
        );
        eprintln!("snapshot with memory.shared: {shared} (120 MiB written): {ms:.2} ms");
        ms
    });
    if std::env::var("SNAPSHOT_ONLY").as_deref() == Ok("1") {
        println!(
            "{{\"snapshot_ms\": {snapshot_ms:.3}, \"snapshot_anon_ms\": {snapshot_anon_ms:.3}, \"snapshot_sparse_ms\": {snapshot_sparse_ms:.3}, \"snapshot_zone_ms\": {snapshot_zone_ms:.3}, \"snapshot_shared_ms\": {snapshot_shared_ms:.3}}}"
        );
        return;
    }
    // The same guest with its memory on two memory servers (r = 2), for remote restores.
    let token = revenant_tests::memd::token_file(work.path());
    let memds = [
        revenant_tests::memd::Memd::start(&token),
        revenant_tests::memd::Memd::start(&token),
    ];
    let remote = templates.path().join("remote");
    let servers = format!(
        r#"{{"servers":"{},{}","token_file":"{}","replicas":2}}"#,
        memds[0].endpoint,
        memds[1].endpoint,
        token.display()
    );
    let upload_ms = make_template(work.path(), &remote, 120, Some(&servers));
    eprintln!("snapshot + upload of 120 MiB to two memory servers: {upload_ms:.1} ms");
    eprintln!(
        "snapshot: {snapshot_ms:.1} ms with 120 MiB of data, {snapshot_sparse_ms:.1} ms sparse"
    );

    let mut results: Vec<(String, f64)> = Vec::new();
    let fork_samples = |mode: &str, n: usize, pool: bool| -> Vec<f64> {
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let spawned = Instant::now();
            let mut vmm = Vmm::spawn(work.path(), &format!("{mode}-{i}"));
            let sent = Instant::now();
            vmm.restore_and_resume(&full, mode);
            let ran = vmm.first_report();
            let from = if pool { sent } else { spawned };
            samples.push((ran - from).as_secs_f64() * 1e3);
        }
        eprintln!(
            "{mode} ({}): p50 {:.3} ms, p99 {:.3} ms over {n}",
            if pool { "pool" } else { "no pool" },
            percentile(samples.clone(), 0.5),
            percentile(samples.clone(), 0.99)
        );
        samples
    };
    // The pool with prepared VMs: each VMM made its KVM VM and reserved the template's memory
    // at start (`--prepare-vm-memory`), so the fork only maps the template and sets state.
    let prepared_samples = |n: usize| -> Vec<f64> {
        let size = format!("{}M", GUEST_MEMORY >> 20);
        let mut samples = Vec::with_capacity(n);
        for i in 0..n {
            let mut vmm = Vmm::spawn_with(
                work.path(),
                &format!("prepared-{i}"),
                &["--prepare-vm-memory", &size],
            );
            let sent = Instant::now();
            vmm.restore_and_resume(&full, "cow");
            samples.push((vmm.first_report() - sent).as_secs_f64() * 1e3);
        }
        samples
    };
    let cow = fork_samples("cow", forks, true);
    let prepared = prepared_samples(forks);
    eprintln!(
        "cow (pool of prepared VMs): p50 {:.3} ms, p99 {:.3} ms over {forks}",
        percentile(prepared.clone(), 0.5),
        percentile(prepared.clone(), 0.99)
    );
    results.push(("prepared_p50_ms".into(), percentile(prepared.clone(), 0.5)));
    results.push(("prepared_p99_ms".into(), percentile(prepared, 0.99)));
    results.push(("fork_p50_ms".into(), percentile(cow.clone(), 0.5)));
    results.push(("fork_p99_ms".into(), percentile(cow.clone(), 0.99)));
    results.push(("cow_p50_ms".into(), percentile(cow, 0.5)));
    for mode in ["ondemand", "copy"] {
        let s = fork_samples(mode, other, true);
        results.push((format!("{mode}_p50_ms"), percentile(s, 0.5)));
    }
    let mut remote_samples = Vec::with_capacity(other);
    for i in 0..other {
        let mut vmm = Vmm::spawn(work.path(), &format!("remote-{i}"));
        let sent = Instant::now();
        vmm.restore_and_resume(&remote, "remote");
        remote_samples.push((vmm.first_report() - sent).as_secs_f64() * 1e3);
    }
    eprintln!(
        "remote (pool): p50 {:.3} ms over {other}",
        percentile(remote_samples.clone(), 0.5)
    );
    results.push(("remote_p50_ms".into(), percentile(remote_samples, 0.5)));
    // Working set (REAP): a 128 MiB guest with 120 MiB of data that reads 32 MiB after a fork.
    let toucher = guests::long_mode_vmgenid_toucher(120 << 8, 32 << 8);
    let ws_local = templates.path().join("ws-local");
    make_template_of(work.path(), &ws_local, &toucher, None);
    let ws_remote = templates.path().join("ws-remote");
    make_template_of(work.path(), &ws_remote, &toucher, Some(&servers));
    for (mode, dir) in [("ondemand", &ws_local), ("remote", &ws_remote)] {
        let (first_ms, first_faults, ms, faults) =
            working_set_run(work.path(), dir, mode, other.min(10));
        results.push((format!("ws_{mode}_first_ms"), first_ms));
        results.push((format!("ws_{mode}_first_faults"), first_faults as f64));
        results.push((format!("ws_{mode}_ms"), ms));
        results.push((format!("ws_{mode}_faults"), faults));
    }
    drop(memds);
    let nopool = fork_samples("cow", other, false);
    results.push(("nopool_p50_ms".into(), percentile(nopool, 0.5)));

    eprintln!("starting {idle} idle cow clones");
    let clones: Vec<Vmm> = (0..idle)
        .map(|i| {
            let mut vmm = Vmm::spawn(work.path(), &format!("idle-{i}"));
            vmm.restore_and_resume(&full, "cow");
            vmm.first_report();
            vmm
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let private: Vec<u64> = clones.iter().map(|c| private_kib(c.child.id())).collect();
    let per_clone_mib = private.iter().sum::<u64>() as f64 / private.len().max(1) as f64 / 1024.0;
    eprintln!(
        "private memory per idle clone: {per_clone_mib:.3} MiB (Private_Clean + Private_Dirty)"
    );
    drop(clones);

    results.push(("snapshot_ms".into(), snapshot_ms));
    results.push(("snapshot_anon_ms".into(), snapshot_anon_ms));
    results.push(("snapshot_sparse_ms".into(), snapshot_sparse_ms));
    results.push(("snapshot_zone_ms".into(), snapshot_zone_ms));
    results.push(("snapshot_shared_ms".into(), snapshot_shared_ms));
    results.push(("snapshot_upload_ms".into(), upload_ms));
    results.push(("private_mib_per_clone".into(), per_clone_mib));
    let body: Vec<String> = results
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v:.3}"))
        .collect();
    println!("{{{}}}", body.join(", "));
}
