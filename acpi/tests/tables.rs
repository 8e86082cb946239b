//! The ACPI tables as ACPICA's disassembler (`iasl -d`, Debian package `acpica-tools`) reads
//! them: every table must disassemble without errors or warnings, and the DSDT of a fixed
//! configuration must match the golden file (`REVENANT_BLESS=1` rewrites it). ACPICA's
//! interpreter (`acpiexec`) then runs the methods an OS calls (sleep packages, `_STA`, `_MAT`,
//! the GED's `_EVT` into the CPU scan and the power button) and must raise no exception.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use revenant_acpi::tables::{build_tables, AcpiConfig, MmioDevice};

const GOLDEN_DSDT: &str = "tests/golden/dsdt-4of8-3virtio.dsl";

fn one_vcpu() -> AcpiConfig {
    AcpiConfig {
        boot_vcpus: 1,
        max_vcpus: 1,
        virtio_mmio: Vec::new(),
        vmgenid: false,
    }
}

/// 4 boot vCPUs of 8, three virtio-mmio transports and VMGenID: the golden configuration.
fn four_of_eight() -> AcpiConfig {
    AcpiConfig {
        boot_vcpus: 4,
        max_vcpus: 8,
        virtio_mmio: (0..3)
            .map(|i| MmioDevice {
                base: 0xd000_0000 + i * 0x1000,
                size: 0x1000,
                irq: 5 + i as u32,
            })
            .collect(),
        vmgenid: true,
    }
}

/// Prints a SKIP line where the test harness does not capture it.
fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {reason}");
}

/// The iasl binary, or None (after printing SKIP) when it is not installed.
fn iasl() -> Option<PathBuf> {
    match Command::new("iasl").arg("-v").output() {
        Ok(_) => Some(PathBuf::from("iasl")),
        Err(e) => {
            skip(&format!(
                "iasl not runnable ({e}); install Debian package acpica-tools"
            ));
            None
        }
    }
}

/// Writes every table of `config` to `dir` as `<SIG>.dat` and returns the signatures.
fn write_tables(config: &AcpiConfig, dir: &Path) -> Vec<String> {
    let tables = build_tables(config).expect("tables build");
    tables
        .tables
        .iter()
        .map(|t| {
            std::fs::write(dir.join(format!("{}.dat", t.signature)), &t.bytes).unwrap();
            t.signature.clone()
        })
        .collect()
}

/// Lines of iasl's output that report a problem. iasl prints diagnostics as
/// `Error    6126 - ...` / `Warning  1234 - ...` (with the level word first, sometimes after
/// a file/line prefix) and a summary `... N Errors, N Warnings, N Remarks`; remarks are fine.
fn problems(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            let diagnostic = ["error", "warning"].iter().any(|level| {
                lower
                    .split(|c: char| !c.is_ascii_alphanumeric())
                    .any(|word| word == *level)
            });
            // The compiler's summary line says "0 Errors, 0 Warnings" when all is well;
            // "Errors"/"Warnings" are plural there, so the word match above never sees them,
            // but a non-zero count must still fail.
            let bad_summary = lower.contains(" errors,")
                && !(lower.contains(" 0 errors,") && lower.contains(" 0 warnings"));
            diagnostic || bad_summary
        })
        .map(str::to_string)
        .collect()
}

/// Runs `iasl -d <SIG>.dat` in `dir`; returns its combined output after asserting success.
fn disassemble(iasl: &Path, dir: &Path, signature: &str) -> String {
    let out = Command::new(iasl)
        .current_dir(dir)
        .arg("-d")
        .arg(format!("{signature}.dat"))
        .output()
        .expect("run iasl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "iasl -d {signature}.dat exited with {}:\n{text}",
        out.status
    );
    let problems = problems(&text);
    assert!(
        problems.is_empty(),
        "iasl -d {signature}.dat reported {problems:?}:\n{text}"
    );
    assert!(
        dir.join(format!("{signature}.dsl")).exists(),
        "iasl wrote no {signature}.dsl:\n{text}"
    );
    text
}

/// Compiles the disassembled DSDT back to AML: the compiler checks far more than the
/// disassembler (predefined names, IDs, argument counts), so a clean compile is the stronger
/// proof that the AML is what we meant.
fn recompile_dsdt(iasl: &Path, dir: &Path) {
    let out = Command::new(iasl)
        .current_dir(dir)
        .args(["-p", "recompiled", "DSDT.dsl"])
        .output()
        .expect("run iasl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl DSDT.dsl failed:\n{text}");
    let problems = problems(&text);
    assert!(
        problems.is_empty(),
        "iasl DSDT.dsl reported {problems:?}:\n{text}"
    );
    assert!(
        dir.join("recompiled.aml").exists(),
        "no AML written:\n{text}"
    );
}

fn disassemble_all(config: &AcpiConfig) {
    let Some(iasl) = iasl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let signatures = write_tables(config, dir.path());
    assert_eq!(
        signatures,
        ["RSDP", "FACS", "XSDT", "FACP", "APIC", "DSDT"],
        "tables in address order"
    );
    for signature in &signatures {
        // iasl loads a binary table only if it starts with a standard table header, which the
        // RSDP lacks ("Binary file does not contain a valid ACPI table"); the unit tests check
        // its checksums and pointer instead.
        if signature == "RSDP" {
            continue;
        }
        disassemble(&iasl, dir.path(), signature);
        let dsl = std::fs::read_to_string(dir.path().join(format!("{signature}.dsl"))).unwrap();
        let problems = problems(&dsl);
        assert!(
            problems.is_empty(),
            "{signature}.dsl has {problems:?}:\n{dsl}"
        );
    }
    recompile_dsdt(&iasl, dir.path());
}

#[test]
fn iasl_accepts_every_table_for_one_vcpu() {
    disassemble_all(&one_vcpu());
}

#[test]
fn iasl_accepts_every_table_for_4_of_8_vcpus_with_virtio_and_vmgenid() {
    disassemble_all(&four_of_eight());
}

#[test]
fn iasl_accepts_every_table_for_the_largest_guest() {
    let mut config = four_of_eight();
    config.max_vcpus = 254;
    config.virtio_mmio = (0..32)
        .map(|i| MmioDevice {
            base: 0xd000_0000 + i * 0x1000,
            size: 0x1000,
            irq: 5 + i as u32,
        })
        .collect();
    disassemble_all(&config);
}

#[test]
fn problem_filter_catches_errors_and_warnings_but_not_remarks() {
    assert!(problems("Remark   2120 -  Control Method should be made Serialized").is_empty());
    assert_eq!(problems("Warning  3144 - Invalid").len(), 1);
    assert_eq!(
        problems("Firmware Warning (ACPI): Incorrect checksum in table [APIC] - 0x98").len(),
        1
    );
    assert_eq!(
        problems("DSDT.dsl     12: Error    6126 - syntax error").len(),
        1
    );
    assert_eq!(
        problems("Compilation complete. 1 Errors, 0 Warnings, 0 Remarks").len(),
        1
    );
    assert_eq!(
        problems("Compilation complete. 0 Errors, 2 Warnings, 0 Remarks").len(),
        1
    );
    assert!(problems("Compilation complete. 0 Errors, 0 Warnings, 3 Remarks").is_empty());
    assert!(problems("Input file DSDT.dat, Length 0x1F2 (498) bytes").is_empty());
}

/// Drops the disassembly's header comment lines that carry the iasl version, the date and
/// the input path, which change from run to run and machine to machine.
fn stable_dsl(dsl: &str) -> String {
    let volatile = [
        "Intel ACPI Component Architecture",
        "AML/ASL+ Disassembler version",
        "Copyright (c)",
        "Disassembly of ",
    ];
    let mut out = String::new();
    for line in dsl.lines() {
        if line.starts_with(" *") && volatile.iter().any(|v| line.contains(v)) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn dsdt_matches_golden_disassembly() {
    let Some(iasl) = iasl() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_tables(&four_of_eight(), dir.path());
    disassemble(&iasl, dir.path(), "DSDT");
    let dsl = std::fs::read_to_string(dir.path().join("DSDT.dsl")).unwrap();
    let dsl = stable_dsl(&dsl);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN_DSDT);
    if std::env::var("REVENANT_BLESS").as_deref() == Ok("1") {
        std::fs::write(&golden, &dsl).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (run with REVENANT_BLESS=1)", golden.display()));
    assert_eq!(
        dsl, expected,
        "DSDT disassembly differs from {GOLDEN_DSDT}; if the change is intended, rerun with REVENANT_BLESS=1"
    );
}

/// Runs ACPICA's AML interpreter (`acpiexec`, also from acpica-tools) in batch mode over the
/// tables of `config` (our FADT, MADT, FACS, XSDT and DSDT; acpiexec makes its own RSDP),
/// after storing `init` values into named objects, and returns its output split into one
/// block per `evaluate` command, keyed by the path evaluated. acpiexec backs SystemMemory
/// regions with plain memory, so a field reads what was last written to it.
fn acpiexec(config: &AcpiConfig, init: &[(&str, u64)], paths: &[&str]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    write_tables(config, dir.path());
    let init_file = dir.path().join("init.txt");
    let init_text: String = init
        .iter()
        .map(|(name, value)| format!("{name} {value:#x}\n"))
        .collect();
    std::fs::write(&init_file, init_text).unwrap();
    let commands: Vec<String> = paths.iter().map(|p| format!("evaluate {p}")).collect();
    let out = Command::new("acpiexec")
        .current_dir(dir.path())
        .arg("-fi")
        .arg(&init_file)
        .arg("-b")
        .arg(commands.join("; "))
        .args(["FACP.dat", "APIC.dat", "FACS.dat", "XSDT.dat", "DSDT.dat"])
        .output()
        .expect("run acpiexec");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "acpiexec failed:\n{text}");
    let problems = problems(&text);
    assert!(
        problems.is_empty(),
        "acpiexec reported {problems:?}:\n{text}"
    );
    // ACPICA exceptions (AE_NOT_FOUND, AE_AML_...) mean a method failed at run time.
    assert!(
        !text.contains("AE_"),
        "acpiexec raised an exception:\n{text}"
    );
    let blocks: Vec<(String, String)> = text
        .split("\nEvaluating ")
        .skip(1)
        .map(|block| {
            let (path, rest) = block.split_once('\n').unwrap_or((block, ""));
            (path.trim().to_string(), rest.to_string())
        })
        .collect();
    let evaluated: Vec<&str> = blocks.iter().map(|(p, _)| p.as_str()).collect();
    // A command may carry arguments after the path ("\\_SB.GED._EVT 23").
    let wanted: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.split_whitespace().next())
        .collect();
    assert_eq!(evaluated, wanted, "every path evaluated once:\n{text}");
    blocks
}

fn acpiexec_available() -> bool {
    match Command::new("acpiexec").arg("-v").output() {
        Ok(_) => true,
        Err(e) => {
            skip(&format!(
                "acpiexec not runnable ({e}); install Debian package acpica-tools"
            ));
            false
        }
    }
}

#[test]
fn acpiexec_evaluates_sleep_states_vmgenid_and_cpu_objects() {
    if !acpiexec_available() {
        return;
    }
    let paths = [
        "\\_S3",
        "\\_S4",
        "\\_S5",
        "\\_SB.VGEN.ADDR",
        "\\_SB.CPUS.C001._MAT",
        "\\_SB.CPUS.C005._STA",
    ];
    let blocks = acpiexec(&four_of_eight(), &[], &paths);
    for (block, slp_typ) in blocks.iter().take(3).zip([
        revenant_acpi::platform::SLP_TYP_S3,
        revenant_acpi::platform::SLP_TYP_S4,
        revenant_acpi::platform::SLP_TYP_S5,
    ]) {
        let expected = format!("[Integer] = {slp_typ:016X}");
        assert!(block.1.contains("Contains 4 Elements"), "{block:?}");
        assert!(block.1.contains(&expected), "{block:?} wants {expected}");
    }
    let vmgenid = format!("[Integer] = {:016X}", revenant_acpi::platform::VMGENID_ADDR);
    assert!(blocks[3].1.contains(&vmgenid), "{:?}", blocks[3]);
    // No vCPU is enabled in the controller's (zeroed) registers: the entry is online capable.
    assert!(
        blocks[4].1.contains("00 08 01 01 02 00 00 00"),
        "{:?}",
        blocks[4]
    );
    assert!(
        blocks[5].1.contains("[Integer] = 0000000000000000"),
        "{:?}",
        blocks[5]
    );

    let paths = ["\\_SB.CPUS.C001._MAT", "\\_SB.CPUS.C005._STA"];
    let blocks = acpiexec(&four_of_eight(), &[("\\_SB.CPUS.CPEN", 1)], &paths);
    assert!(
        blocks[0].1.contains("00 08 01 01 01 00 00 00"),
        "{:?}",
        blocks[0]
    );
    assert!(
        blocks[1].1.contains("[Integer] = 000000000000000F"),
        "{:?}",
        blocks[1]
    );
}

/// The `Notify` lines acpiexec printed for `device` with `value`.
fn notified(block: &str, device: &str, value: u8) -> bool {
    block.lines().any(|l| {
        l.contains(&format!("Notify on [{device}]")) && l.contains(&format!("Value 0x{value:02X}"))
    })
}

#[test]
fn acpiexec_runs_ged_events_into_hotplug_scan_and_power_button() {
    if !acpiexec_available() {
        return;
    }
    let evt = ["\\_SB.GED._EVT 23"];
    let cpu_and_button = platform_bits(true, true);
    let blocks = acpiexec(
        &four_of_eight(),
        &[("\\_SB.CPUS.CINS", 1), ("\\_SB.GED.GDAT", cpu_and_button)],
        &evt,
    );
    let block = &blocks[0].1;
    // acpiexec's registers are plain memory, so every vCPU reads as inserting.
    for cpu in 0..8 {
        assert!(
            notified(block, &format!("C{cpu:03X}"), 1),
            "C{cpu:03X} device check:\n{block}"
        );
    }
    assert!(notified(block, "PWRB", 0x80), "{block}");

    let blocks = acpiexec(
        &four_of_eight(),
        &[
            ("\\_SB.CPUS.CRMV", 1),
            ("\\_SB.GED.GDAT", platform_bits(true, false)),
        ],
        &evt,
    );
    let block = &blocks[0].1;
    assert!(notified(block, "C007", 3), "eject request:\n{block}");
    assert!(!notified(block, "PWRB", 0x80), "{block}");

    let blocks = acpiexec(
        &four_of_eight(),
        &[
            ("\\_SB.CPUS.CINS", 1),
            ("\\_SB.GED.GDAT", platform_bits(false, true)),
        ],
        &evt,
    );
    let block = &blocks[0].1;
    assert!(notified(block, "PWRB", 0x80), "{block}");
    assert!(
        !block.contains("[C000]"),
        "no CPU scan without the CPU bit:\n{block}"
    );
    assert!(!notified(block, "VGEN", 0x80), "{block}");

    // A new VM generation ID (a restored clone): the GED notifies VGEN, and nothing else.
    let blocks = acpiexec(
        &four_of_eight(),
        &[(
            "\\_SB.GED.GDAT",
            u64::from(revenant_acpi::platform::GED_EVENT_VMGENID),
        )],
        &evt,
    );
    let block = &blocks[0].1;
    assert!(notified(block, "VGEN", 0x80), "VMGenID change:\n{block}");
    assert!(!notified(block, "PWRB", 0x80), "{block}");
}

fn platform_bits(cpu: bool, button: bool) -> u64 {
    use revenant_acpi::platform::{GED_EVENT_CPU_HOTPLUG, GED_EVENT_POWER_BUTTON};
    let mut bits = 0;
    if cpu {
        bits |= GED_EVENT_CPU_HOTPLUG;
    }
    if button {
        bits |= GED_EVENT_POWER_BUTTON;
    }
    u64::from(bits)
}
