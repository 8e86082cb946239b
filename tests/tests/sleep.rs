//! ACPI sleep states with a test guest: the guest writes SLP_TYP|SLP_EN, the VMM enters the
//! state, `vm.info` reports it, `vm.wake` brings the guest back at its FACS waking vector.

use std::time::{Duration, Instant};

use revenant_tests::guests;
use revenant_tests::skip::kvm_available;
use revenant_tests::vmm_process::{test_guest_config, write_guest, ApiVmm};

const LIMIT: Duration = Duration::from_secs(30);

fn boot_sleeper(vmm: &mut ApiVmm, sleep_mode: &str, rounds: u8) {
    let image = write_guest(
        vmm.dir.path(),
        "sleeper.bin",
        &guests::real_mode_sleeper(rounds),
    );
    let body = test_guest_config(
        &image,
        "real",
        16777216,
        "Tty",
        &format!(r#""sleep_mode":"{sleep_mode}""#),
    );
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
}

fn wait_until(vmm: &mut ApiVmm, what: &str, mut cond: impl FnMut(&mut ApiVmm) -> bool) {
    let start = Instant::now();
    while !cond(vmm) {
        assert!(
            start.elapsed() < LIMIT,
            "timed out waiting for {what}; stdout {:?}",
            vmm.stdout()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn info(vmm: &mut ApiVmm) -> (String, String) {
    let i = vmm.client.get("vm.info").json();
    (
        i["state"].as_str().unwrap().to_string(),
        i["sleep_state"].as_str().unwrap().to_string(),
    )
}

#[test]
fn guest_s3_then_wake_resumes_at_the_waking_vector_then_s5_powers_off() {
    if !kvm_available("guest_s3_then_wake_resumes_at_the_waking_vector_then_s5_powers_off") {
        return;
    }
    let mut vmm = ApiVmm::start();
    boot_sleeper(&mut vmm, "s3", 3);
    wait_until(&mut vmm, "S3", |v| {
        info(v) == ("Sleeping".into(), "S3".into())
    });
    assert_eq!(vmm.stdout(), "1\n");
    // Asleep means asleep: nothing more is printed.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(vmm.stdout(), "1\n");

    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    // The guest restarted at its waking vector, saw WAK_STS, and its counter (in RAM) survived.
    wait_until(&mut vmm, "the second sleep", |v| {
        v.stdout() == "1\nW2\n" && info(v).0 == "Sleeping"
    });
    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    // Third start: S5 instead of S3, so the VM powers off; the VMM stays up.
    wait_until(&mut vmm, "power off", |v| info(v).0 == "Shutdown");
    assert_eq!(vmm.stdout(), "1\nW2\nW3\n");
    assert_eq!(vmm.client.get("vmm.ping").status, 200);
}

#[test]
fn sz_mode_turns_the_guest_s3_into_sz_and_accounts_its_energy() {
    if !kvm_available("sz_mode_turns_the_guest_s3_into_sz_and_accounts_its_energy") {
        return;
    }
    let mut vmm = ApiVmm::start();
    boot_sleeper(&mut vmm, "sz", 2);
    wait_until(&mut vmm, "Sz", |v| {
        info(v) == ("Sleeping".into(), "Sz".into())
    });
    std::thread::sleep(Duration::from_millis(300));
    let counters = vmm.client.get("vm.counters").json();
    let energy = &counters["energy"];
    let sz_s = energy["seconds"]["sz"].as_f64().unwrap();
    assert!(sz_s >= 0.25, "{energy}");
    assert_eq!(energy["seconds"]["s3"].as_f64(), Some(0.0), "{energy}");
    assert!(energy["joules"]["sz"].as_f64().unwrap() > 0.0, "{energy}");
    let total = energy["total_joules"].as_f64().unwrap();
    let sum: f64 = energy["joules"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((total - sum).abs() < 1e-6 * total.max(1.0), "{energy}");

    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    wait_until(&mut vmm, "power off", |v| info(v).0 == "Shutdown");
    assert_eq!(vmm.stdout(), "1\nW2\n");
}

#[test]
fn host_initiated_sleep_and_wake_continue_where_the_guest_was() {
    if !kvm_available("host_initiated_sleep_and_wake_continue_where_the_guest_was") {
        return;
    }
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "ticker.bin", &guests::long_mode_ticker(24));
    let body = test_guest_config(&image, "long", 33554432, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    // Waking or sleeping a VM that isn't running/asleep is refused.
    assert_eq!(vmm.client.put("vm.wake", None).status, 409);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    assert_eq!(vmm.client.put("vm.wake", None).status, 409);
    let bad = vmm.client.put("vm.sleep", Some(r#"{"state":"s7"}"#));
    assert_eq!(
        (bad.status, bad.json()["field"].as_str()),
        (400, Some("state"))
    );
    let reports = |v: &mut ApiVmm| v.reports().len();
    wait_until(&mut vmm, "the ticker", |v| reports(v) >= 2);

    assert_eq!(
        vmm.client.put("vm.sleep", Some(r#"{"state":"sz"}"#)).status,
        204
    );
    assert_eq!(info(&mut vmm), ("Sleeping".into(), "Sz".into()));
    let asleep = reports(&mut vmm);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(reports(&mut vmm), asleep, "the guest ran while in Sz");
    assert_eq!(vmm.client.put("vm.pause", None).status, 409);
    assert_eq!(vmm.client.put("vm.wake", None).status, 204);
    assert_eq!(info(&mut vmm), ("Running".into(), "S0".into()));
    wait_until(&mut vmm, "progress after wake", |v| reports(v) > asleep);
}

#[test]
fn power_button_wakes_a_sleeping_guest_and_reaches_a_running_one_through_the_ged() {
    if !kvm_available(
        "power_button_wakes_a_sleeping_guest_and_reaches_a_running_one_through_the_ged",
    ) {
        return;
    }
    // Sleeping: the power button wakes it like vm.wake.
    let mut vmm = ApiVmm::start();
    boot_sleeper(&mut vmm, "s3", 2);
    wait_until(&mut vmm, "S3", |v| info(v).0 == "Sleeping");
    assert_eq!(vmm.client.put("vm.power-button", None).status, 204);
    wait_until(&mut vmm, "power off after the wake", |v| {
        info(v).0 == "Shutdown"
    });
    assert_eq!(vmm.stdout(), "1\nW2\n");
    assert_eq!(
        vmm.client.put("vm.power-button", None).status,
        409,
        "no VM running any more"
    );

    // Running: a GED event with the power-button bit, read (and cleared) by the guest.
    let mut vmm = ApiVmm::start();
    let image = write_guest(vmm.dir.path(), "ged.bin", &guests::long_mode_ged_poller());
    let body = test_guest_config(&image, "long", 16777216, "Off", "");
    assert_eq!(vmm.client.put("vm.create", Some(&body)).status, 204);
    assert_eq!(vmm.client.put("vm.boot", None).status, 204);
    wait_until(&mut vmm, "the poller", |v| !v.reports().is_empty());
    assert_eq!(vmm.client.put("vm.power-button", None).status, 204);
    wait_until(&mut vmm, "the guest's reset", |v| info(v).0 == "Shutdown");
    let reports = revenant_tests::vmm_process::test_reports(&vmm.stderr());
    // 0xa0, then the GED register with only the power-button bit (platform::GED_EVENT_POWER_BUTTON).
    assert_eq!(reports, vec![0xa0, 1 << 2], "{}", vmm.stderr());
}
