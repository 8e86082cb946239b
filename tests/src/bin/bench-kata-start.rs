//! `scripts/bench kata-start`: the VMM-side time of kata's start sequence against a ready
//! `revenant --api-socket` (as kata spawns it, then polls `vmm.ping`): `vm.create` (kata's
//! body) -> `vm.info` -> `vm.boot` -> `vm.info` says Running, p50 over RUNS runs; and one
//! `vm.add-disk` hot-plugged into the running VM (answered `{id, bdf}`). The guest is a
//! tiny test guest that halts. Progress on stderr; the last stdout line is one JSON object.

use std::time::Instant;

use revenant_tests::bench::{env_count, percentile, BenchVmm};
use revenant_tests::{guests, kata};

fn main() {
    let runs = env_count("RUNS", 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("halt.bin");
    std::fs::write(&image, guests::real_mode_halt()).expect("write guest");
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).expect("write disk");
    let add_disk = format!(
        r#"{{"path":"{}","readonly":false,"image_type":"Raw","vhost_user":false,"num_queues":1,"queue_size":128,"iommu":false,"direct":false}}"#,
        disk.display()
    );
    let (mut start, mut add) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for i in 0..runs {
        let run_dir = dir.path().join(format!("run{i}"));
        std::fs::create_dir(&run_dir).expect("run dir");
        let mut vmm = BenchVmm::spawn(&run_dir, "clh-api");
        let config = kata::vm_config(&image, "real", &run_dir);
        let t0 = Instant::now();
        assert_eq!(vmm.client.put("vm.create", Some(&config)).status, 204);
        assert_eq!(vmm.client.get("vm.info").json()["state"], "Created");
        assert_eq!(vmm.client.put("vm.boot", None).status, 204);
        assert_eq!(vmm.client.get("vm.info").json()["state"], "Running");
        let started = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let r = vmm.client.put("vm.add-disk", Some(&add_disk));
        let added = t1.elapsed().as_secs_f64() * 1e3;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["bdf"], "0000:00:01.0");
        eprintln!("run {i}: create..running {started:.3} ms, add-disk {added:.3} ms");
        start.push(started);
        add.push(added);
        let _ = vmm.client.request("PUT", "vmm.shutdown", None);
    }
    eprintln!(
        "create..running p50 {:.3} ms p90 {:.3}; add-disk p50 {:.3} ms p90 {:.3}",
        percentile(start.clone(), 0.5),
        percentile(start.clone(), 0.9),
        percentile(add.clone(), 0.5),
        percentile(add.clone(), 0.9)
    );
    println!(
        "{{\"create_to_running_ms\": {:.3}, \"create_to_running_p90_ms\": {:.3}, \"add_disk_ms\": {:.3}, \"add_disk_p90_ms\": {:.3}, \"runs\": {runs}}}",
        percentile(start.clone(), 0.5),
        percentile(start, 0.9),
        percentile(add.clone(), 0.5),
        percentile(add, 0.9)
    );
}
