//! `scripts/bench density`: how many idle copy-on-write clones of a 128 MiB template run at
//! once on this host, and host memory per clone (drop in MemAvailable / clones).
//!
//! Clones are started one after another until TARGET (2000) is reached, a clone fails, or
//! MemAvailable would drop below FLOOR_MIB (2048): the machine is shared and the run must stop
//! by itself. The template guest filled FILL_MIB (16) of its RAM and then halted, so idle
//! clones cost no CPU. All clones are checked alive (Running, answering) before they stop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revenant_tests::api_client::ApiClient;
use revenant_tests::bins::binary;
use revenant_tests::guests;
use revenant_tests::vmm_process::test_guest_config;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn spawn(socket: &Path) -> Option<(Child, ApiClient)> {
    let child = Command::new(binary("revenant"))
        .arg("--api-socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut client = ApiClient::new(socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() || client.request("GET", "vmm.ping", None).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Some((child, client))
}

fn main() {
    let target = env_u64("TARGET", 2000) as usize;
    let floor_kib = env_u64("FLOOR_MIB", 2048) << 10;
    let fill_mib = env_u64("FILL_MIB", 16);
    let work = tempfile::tempdir().expect("tempdir");
    let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir");
    let template = shm.path().join("template");

    // The template VM.
    let image = work.path().join("idle.bin");
    std::fs::write(&image, guests::long_mode_fill_then_idle(fill_mib << 8)).expect("guest");
    let (mut source, mut client) = spawn(&work.path().join("source.sock")).expect("template VMM");
    let body = test_guest_config(&image, "long", 134217728, "Off", "");
    assert_eq!(client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(client.put("vm.boot", None).status, 204);
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get("vm.counters").json()["test_reports"]
        .as_array()
        .map_or(0, Vec::len)
        == 0
    {
        assert!(Instant::now() < deadline, "template guest never went idle");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(client.put("vm.pause", None).status, 204);
    let url = format!(r#"{{"destination_url":"file://{}"}}"#, template.display());
    assert_eq!(client.put("vm.snapshot", Some(&url)).status, 204);
    let _ = client.request("PUT", "vmm.shutdown", None);
    let _ = source.wait();

    let before = mem_available_kib();
    eprintln!(
        "MemAvailable {} MiB; starting up to {target} clones",
        before >> 10
    );
    let restore = format!(r#"{{"source_url":"file://{}"}}"#, template.display());
    // Only the process and its socket are kept: holding an HTTP client per clone would put
    // the bench's own memory into the measurement.
    let mut clones: Vec<(Child, std::path::PathBuf)> = Vec::new();
    let started = Instant::now();
    while clones.len() < target {
        if mem_available_kib() < floor_kib {
            eprintln!("stopping: MemAvailable below {} MiB", floor_kib >> 10);
            break;
        }
        let socket = work.path().join(format!("c{}.sock", clones.len()));
        let Some((child, mut c)) = spawn(&socket) else {
            eprintln!("stopping: clone {} did not start", clones.len());
            break;
        };
        let ok = c
            .request("PUT", "vm.restore", Some(&restore))
            .is_ok_and(|r| r.status == 204)
            && c.request("PUT", "vm.resume", None)
                .is_ok_and(|r| r.status == 204);
        drop(c);
        clones.push((child, socket));
        if !ok {
            eprintln!("stopping: clone {} failed to restore", clones.len() - 1);
            break;
        }
        if clones.len() % 250 == 0 {
            eprintln!(
                "{} clones, MemAvailable {} MiB, {:.1} s",
                clones.len(),
                mem_available_kib() >> 10,
                started.elapsed().as_secs_f64()
            );
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = mem_available_kib();
    let alive = clones
        .iter()
        .map(|(_, socket)| ApiClient::new(socket).request("GET", "vm.info", None))
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.status == 200 && r.json()["state"] == "Running")
        })
        .count();
    let per_clone = before.saturating_sub(after) as f64 / clones.len().max(1) as f64;
    eprintln!(
        "{alive} of {} clones alive and Running; MemAvailable {} -> {} MiB: {per_clone:.0} KiB per clone",
        clones.len(),
        before >> 10,
        after >> 10
    );
    for (child, _) in &mut clones {
        let _ = child.kill();
    }
    for (child, _) in &mut clones {
        let _ = child.wait();
    }
    println!("{{\"clones_alive\": {alive}, \"host_kib_per_clone\": {per_clone:.1}, \"clones_started\": {}, \"fill_mib\": {fill_mib}}}", clones.len());
}
