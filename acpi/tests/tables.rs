//! The ACPI tables as ACPICA's disassembler (`iasl -d`, Debian package `acpica-tools`) reads
//! them: every table must disassemble without errors or warnings, and the DSDT of a fixed
//! configuration must match the golden file (`REVENANT_BLESS=1` rewrites it).

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
