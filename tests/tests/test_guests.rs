//! The four tier-2 test guests (DESIGN.md), run by the real `revenant` binary on real KVM.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{
    run_direct, test_guest_config, test_reports, write_guest, ApiVmm,
};

const RUN_LIMIT: Duration = Duration::from_secs(60);

#[test]
fn real_mode_guest_prints_on_the_serial_port() {
    if !kvm_available("real_mode_guest_prints_on_the_serial_port") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "hello.bin",
        &guests::real_mode_hello("Hello from real mode\n"),
    );
    let run = run_direct(
        &["--test-guest", image.to_str().unwrap(), "--memory", "16M"],
        RUN_LIMIT,
    );
    assert_eq!(
        run.stdout, "Hello from real mode\n",
        "stderr: {}",
        run.stderr
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
}

/// Without `-v` the VMM logs only warnings; `-vv` adds debug events (the boot stages).
#[test]
fn verbose_flags_set_the_log_level() {
    if !kvm_available("verbose_flags_set_the_log_level") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(dir.path(), "hello.bin", &guests::real_mode_hello("hi"));
    let image = image.to_str().unwrap();
    let run = |flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["--test-guest", image, "--memory", "16M"]);
        let run = run_direct(&args, RUN_LIMIT);
        assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
        run.stderr
    };
    let quiet = run(&[]);
    assert!(
        !quiet.contains("DEBUG") && !quiet.contains("INFO"),
        "{quiet}"
    );
    let debug = run(&["-vv"]);
    assert!(
        debug.contains("DEBUG") && debug.contains("stage:"),
        "{debug}"
    );
}

#[test]
fn serial_output_can_go_to_a_file() {
    if !kvm_available("serial_output_can_go_to_a_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "hello.bin",
        &guests::real_mode_hello("to a file"),
    );
    let log = dir.path().join("serial.log");
    let serial = format!("file:{}", log.display());
    let run = run_direct(
        &["--test-guest", image.to_str().unwrap(), "--serial", &serial],
        RUN_LIMIT,
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "to a file");
}

#[test]
fn long_mode_guest_checksums_pages_at_cpl3() {
    if !kvm_available("long_mode_guest_checksums_pages_at_cpl3") {
        return;
    }
    let pages = 4096; // 16 MiB
    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(
        dir.path(),
        "checksum.bin",
        &guests::long_mode_checksum(pages),
    );
    let run = run_direct(
        &[
            "--test-guest",
            image.to_str().unwrap(),
            "--test-guest-mode",
            "long",
            "--memory",
            "64M",
        ],
        RUN_LIMIT,
    );
    assert_eq!(run.status.code(), Some(0), "stderr: {}", run.stderr);
    let reports = test_reports(&run.stderr);
    // [CPL of the workload, mismatching words, folded checksum]
    assert_eq!(
        reports,
        vec![3, 0, guests::expected_checksum(pages)],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn halted_guest_is_paused_and_resumed_over_the_api() {
    if !kvm_available("halted_guest_is_paused_and_resumed_over_the_api") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "halt.bin", &guests::real_mode_halt());
    let body = format!(
        r#"{{"cpus":{{"boot_vcpus":1,"max_vcpus":1}},"memory":{{"size":16777216}},"payload":{{"test_guest":{{"path":"{}","mode":"real"}}}},"serial":{{"mode":"Tty"}}}}"#,
        image.display()
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_for(
        || vmm.stdout().contains("ready"),
        "the guest to print ready",
    );
    // The vCPU now sits in HLT inside KVM with interrupts off; pausing must still get it out.
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Paused");
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Running");
    assert_eq!(vmm.client.put("vm.shutdown", None).status, 204);
    assert_eq!(vmm.client.get("vm.info").json()["state"], "Shutdown");
}

#[test]
fn paused_guest_makes_no_progress_until_resumed() {
    if !kvm_available("paused_guest_makes_no_progress_until_resumed") {
        return;
    }
    let mut vmm = ApiVmm::start();
    // A report every 2^24 iterations of a native CPL3 loop: several per second here.
    let image = write_guest(vmm.dir.path(), "ticker.bin", &guests::long_mode_ticker(24));
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    let reports = |vmm: &mut ApiVmm| vmm.reports().len();
    let start = Instant::now();
    while reports(&mut vmm) < 2 {
        assert!(
            start.elapsed() < RUN_LIMIT,
            "the ticker guest never reported"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(vmm.client.put("vm.pause", None).status, 204);
    let paused_at = reports(&mut vmm);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(reports(&mut vmm), paused_at, "the guest ran while paused");
    assert_eq!(vmm.client.put("vm.resume", None).status, 204);
    let resumed = Instant::now();
    while reports(&mut vmm) <= paused_at {
        assert!(
            resumed.elapsed() < RUN_LIMIT,
            "the guest did not continue after resume"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reports count up 1, 2, 3, ... with none lost or repeated across the pause.
    let values = vmm.reports();
    assert_eq!(values, (1..=values.len() as u64).collect::<Vec<_>>());
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < RUN_LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn serial_socket_replays_what_was_printed_before_a_client_connected() {
    if !kvm_available("serial_socket_replays_what_was_printed_before_a_client_connected") {
        return;
    }
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let image = write_guest(dir.path(), "halt.bin", &guests::real_mode_halt());
    let socket = dir.path().join("console.sock");
    let serial = format!("socket:{}", socket.display());
    let mut child = Command::new(revenant_tests::bins::binary("revenant"))
        .args([
            "--test-guest",
            image.to_str().unwrap(),
            "--memory",
            "16M",
            "--serial",
            &serial,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(|| socket.exists(), "the console socket");
    // Give the guest time to print before anyone listens.
    std::thread::sleep(Duration::from_millis(300));
    let mut client = UnixStream::connect(&socket).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = [0u8; 6];
    client.read_exact(&mut got).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(&got, b"ready\n");
}
