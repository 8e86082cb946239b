//! The `revenant` command line, run as a user would. (Its presence also makes
//! `cargo test --workspace` build the binary the workspace's integration tests start.)

use std::process::Command;

fn revenant(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(args)
        .output()
        .expect("run revenant")
}

#[test]
fn help_explains_every_flag_with_an_example() {
    let out = revenant(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--api-socket",
        "--kernel",
        "--initramfs",
        "--cmdline",
        "--cpus",
        "--memory",
        "--serial",
        "--test-guest",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.matches("Example:").count() >= 8, "{help}");
}

#[test]
fn nothing_to_run_is_an_error_not_a_hang() {
    let out = revenant(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to run"));
}

#[test]
fn bad_flags_are_rejected_with_a_reason() {
    for (args, needle) in [
        (vec!["--test-guest", "/x", "--memory", "12Q"], "not a size"),
        (
            vec!["--test-guest", "/x", "--serial", "tcp:1"],
            "stdout, file:PATH",
        ),
        (
            vec!["--api-socket", "/tmp/s", "--kernel", "/k"],
            "cannot be used with",
        ),
    ] {
        let out = revenant(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn missing_kernel_file_is_named() {
    let out = revenant(&["--kernel", "/nonexistent/vmlinux"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("payload.kernel") && err.contains("/nonexistent/vmlinux"),
        "{err}"
    );
}

#[test]
fn zero_vcpus_are_refused() {
    let out = revenant(&["--test-guest", "/dev/null", "--cpus", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cpus.boot_vcpus"));
}

#[test]
fn dump_acpi_writes_tables_that_iasl_decompiles() {
    let dir = tempfile::tempdir().unwrap();
    let out = revenant(&[
        "--dump-acpi",
        dir.path().to_str().unwrap(),
        "--cpus",
        "2",
        "--max-cpus",
        "4",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for sig in ["RSDP", "XSDT", "FACP", "APIC", "DSDT", "FACS"] {
        assert!(
            dir.path().join(format!("{sig}.dat")).is_file(),
            "{sig}.dat missing"
        );
    }
    let iasl = Command::new("iasl").arg("-v").output();
    if iasl.is_err() {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIP: dump_acpi_writes_tables_that_iasl_decompiles: iasl not installed (scripts/setup installs acpica-tools)");
        return;
    }
    let out = Command::new("iasl")
        .arg("-d")
        .arg(dir.path().join("DSDT.dat"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let dsl = std::fs::read_to_string(dir.path().join("DSDT.dsl")).unwrap();
    // Four possible CPUs, two enabled at boot: the hotplug container lists all four.
    for cpu in ["C000", "C001", "C002", "C003"] {
        assert!(dsl.contains(cpu), "DSDT lacks CPU {cpu}");
    }
    assert!(
        dsl.contains("_S5_") && dsl.contains("ACPI0013"),
        "DSDT lacks sleep states or the GED"
    );
}
