//! Runs the real `revenant-sim` binary: sample trace, determinism, bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_revenant-sim");

fn sample_trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample-trace.csv")
}

fn sim(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--quiet")
        .output()
        .expect("run revenant-sim")
}

fn ok(args: &[&str]) -> Output {
    let out = sim(args);
    assert!(
        out.status.success(),
        "revenant-sim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn failing(args: &[&str]) -> String {
    let out = sim(args);
    assert!(!out.status.success(), "revenant-sim {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn summary(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sample_trace_gives_summary_plots_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let trace = sample_trace();
    let out = ok(&[
        "--trace",
        trace.to_str().unwrap(),
        "--servers",
        "20",
        "--hours",
        "6",
        "--out",
        out_dir,
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("zombieland") && table.contains("server_centric"),
        "{table}"
    );

    let s = summary(dir.path());
    assert_eq!(s["servers"], 20);
    assert_eq!(s["trace_hours"], 6.0);
    assert_eq!(s["requests"], 138);
    assert!(s["seed"].is_null());
    let policies = s["policies"].as_array().unwrap();
    let names: Vec<&str> = policies
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["server_centric", "rack_scale", "zombieland", "revenant"]
    );
    let energy = |i: usize| policies[i]["energy_kwh"].as_f64().unwrap();
    assert!(energy(0) > 0.0);
    // The sample is memory-heavy: disaggregation must save energy over server-centric.
    assert!(
        energy(2) < energy(0),
        "zombieland {} vs server-centric {}",
        energy(2),
        energy(0)
    );
    assert_eq!(policies[0]["savings_vs_server_centric_pct"], 0.0);
    let saving = policies[2]["savings_vs_server_centric_pct"]
        .as_f64()
        .unwrap();
    assert!(saving > 0.0 && saving < 100.0, "{saving}");
    assert!(policies[2]["server_hours"]["sz"].as_f64().unwrap() > 0.0);
    assert_eq!(policies[0]["server_hours"]["sz"], 0.0);
    // Every server is accounted for the whole period: 20 servers x 6 h.
    for p in policies {
        let h = &p["server_hours"];
        let total: f64 = ["s0_busy", "s0_idle", "s3", "sz", "s5", "transition"]
            .iter()
            .map(|k| h[*k].as_f64().unwrap())
            .sum();
        assert!((total - 120.0).abs() < 1e-6, "{}: {total}", p["policy"]);
        assert_eq!(p["vms_rejected"], 0);
    }
    for name in [
        "energy.svg",
        "states-zombieland.svg",
        "states-server_centric.svg",
    ] {
        let svg = std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
    }
}

#[test]
fn same_input_gives_byte_identical_json() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let trace = sample_trace();
    for dir in [&a, &b] {
        ok(&[
            "--trace",
            trace.to_str().unwrap(),
            "--servers",
            "20",
            "--no-plots",
            "--out",
            dir.path().to_str().unwrap(),
        ]);
    }
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("summary.json")).unwrap();
    assert_eq!(read(&a), read(&b));

    let synthetic = |dir: &Path, seed: &str| {
        ok(&[
            "--synthetic",
            "--servers",
            "40",
            "--hours",
            "3",
            "--seed",
            seed,
            "--no-plots",
            "--out",
            dir.to_str().unwrap(),
        ]);
        std::fs::read(dir.join("summary.json")).unwrap()
    };
    let first = synthetic(a.path(), "3");
    assert_eq!(first, synthetic(b.path(), "3"));
    assert_ne!(first, synthetic(c.path(), "4"));
    assert_eq!(summary(a.path())["seed"], 3);
}

#[test]
fn malformed_csv_line_reports_line_and_column_and_simulates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("bad.csv");
    std::fs::write(
        &csv,
        "id,arrival_s,departure_s,cpus,mem_gib,hot_fraction\n1,0,10,1,2,0.5\n2,0,10,two,2,0.5\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let err = failing(&[
        "--trace",
        csv.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(err.contains("line 3, column 4 (cpus)"), "{err}");
    assert!(!out_dir.join("summary.json").exists());
}

#[test]
fn bad_capacities_profiles_and_policies_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let err = failing(&["--synthetic", "--cpus-per-server", "0", "--out", out]);
    assert!(err.contains("cpus_per_server"), "{err}");
    let err = failing(&["--synthetic", "--mem-gib-per-server=-8", "--out", out]);
    assert!(err.contains("mem_gib_per_server"), "{err}");
    let err = failing(&["--synthetic", "--servers", "0", "--out", out]);
    assert!(err.contains("servers"), "{err}");

    let profile = dir.path().join("p.toml");
    std::fs::write(&profile, "[power_w]\nsz = \"high\"\n").unwrap();
    let err = failing(&[
        "--synthetic",
        "--power-profile",
        profile.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(err.contains("sz"), "{err}");

    let ram = dir.path().join("ram.json");
    std::fs::write(&ram, r#"{"remote_fault_p50_us": 1}"#).unwrap();
    let err = failing(&[
        "--synthetic",
        "--ram-ext-json",
        ram.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(err.contains("remote_fault_p99_us"), "{err}");

    let err = failing(&["--synthetic", "--policy", "greedy", "--out", out]);
    assert!(err.contains("greedy"), "{err}");
}

#[test]
fn power_profile_file_changes_the_energy() {
    let dir = tempfile::tempdir().unwrap();
    let trace = sample_trace();
    let base = dir.path().join("base");
    let cheap = dir.path().join("cheap");
    let common = [
        "--trace",
        trace.to_str().unwrap(),
        "--servers",
        "20",
        "--policy",
        "server_centric",
        "--no-plots",
    ];
    ok(&[&common[..], &["--out", base.to_str().unwrap()]].concat());
    let profile = dir.path().join("p.json");
    std::fs::write(
        &profile,
        r#"{"power_w": {"s0_busy": 100.0, "s0_idle": 50.0, "s3": 5.0, "sz": 5.75, "s5": 3.0}}"#,
    )
    .unwrap();
    ok(&[
        &common[..],
        &[
            "--power-profile",
            profile.to_str().unwrap(),
            "--out",
            cheap.to_str().unwrap(),
        ],
    ]
    .concat());
    let e = |d: &Path| summary(d)["policies"][0]["energy_kwh"].as_f64().unwrap();
    // Every watt figure halved (transition power unchanged): energy drops by close to half.
    let ratio = e(&cheap) / e(&base);
    assert!(ratio > 0.45 && ratio < 0.55, "{ratio}");
}

#[test]
fn help_explains_flags_with_examples() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--synthetic",
        "--trace",
        "--power-profile",
        "--ram-ext-json",
        "--policy",
        "--out",
        "Example:",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn google_task_events_and_datacenter_file_are_used() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("task_events.csv");
    // Two tasks scheduled at trace time 0 and 60 s, finishing at 3600 s and 1800 s.
    std::fs::write(
        &events,
        "600000000,,1,0,5,1,u,0,0,0.25,0.5,0,0\n\
         660000000,,1,1,5,1,u,0,0,0.125,0.25,0,0\n\
         2400000000,,1,1,5,4,u,0,0,,,,\n\
         4200000000,,1,0,5,4,u,0,0,,,,\n",
    )
    .unwrap();
    let usage = dir.path().join("task_usage.csv");
    std::fs::write(&usage, "0,300000000,1,0,5,0.1,0.125,0.2\n").unwrap();
    let dc = dir.path().join("dc.toml");
    std::fs::write(
        &dc,
        "servers = 3\ncpus_per_server = 16.0\nmem_gib_per_server = 64.0\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    ok(&[
        "--google-task-events",
        events.to_str().unwrap(),
        "--google-task-usage",
        usage.to_str().unwrap(),
        "--datacenter",
        dc.to_str().unwrap(),
        "--no-plots",
        "--out",
        out.to_str().unwrap(),
    ]);
    let s = summary(&out);
    assert_eq!(s["servers"], 3);
    assert_eq!(s["requests"], 2);
    assert_eq!(s["trace_hours"], 1.0);
    // Ideal energy: (0.25*16 cores * 3600 s + 0.125*16 * 1740 s) / 16 cores * 200 W.
    let ideal = (4.0 * 3600.0 + 2.0 * 1740.0) / 16.0 * 200.0 / 3.6e6;
    assert!((s["ideal_energy_kwh"].as_f64().unwrap() - ideal).abs() < 1e-9);

    let bad = dir.path().join("bad_events.csv");
    std::fs::write(&bad, "600000000,,1,0,5,1,u,0,0,0.25,lots,0,0\n").unwrap();
    let err = failing(&[
        "--google-task-events",
        bad.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("line 1, column 11 (memory_request)"), "{err}");
}
