//! The ACPI tables as ACPICA's disassembler (`iasl -d`, Debian package `acpica-tools`) reads
//! them: every table must disassemble without errors or warnings, and the DSDT of a fixed
//! configuration, without and with a PCI root bus, must match the golden files
//! (`REVENANT_BLESS=1` rewrites them). ACPICA's interpreter (`acpiexec`) then runs the methods
//! an OS calls (sleep packages, `_STA`, `_MAT`, the GED's `_EVT` into the CPU scan, the power
//! button and the PCI slot scan, a slot's `_EJ0`) and must raise no exception.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use revenant_acpi::platform;
use revenant_acpi::tables::{build_tables, AcpiConfig, MmioDevice, PciRootConfig};

const GOLDEN_DSDT: &str = "tests/golden/dsdt-4of8-3virtio.dsl";
const GOLDEN_DSDT_PCI: &str = "tests/golden/dsdt-4of8-3virtio-pci.dsl";

fn one_vcpu() -> AcpiConfig {
    AcpiConfig {
        boot_vcpus: 1,
        max_vcpus: 1,
        virtio_mmio: Vec::new(),
        vmgenid: false,
        pci: None,
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
        pci: None,
    }
}

/// The golden configuration with the standard PCI root bus.
fn four_of_eight_with_pci() -> AcpiConfig {
    AcpiConfig {
        pci: Some(PciRootConfig::standard()),
        ..four_of_eight()
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
    let expected: &[&str] = if config.pci.is_some() {
        &["RSDP", "FACS", "XSDT", "FACP", "APIC", "MCFG", "DSDT"]
    } else {
        &["RSDP", "FACS", "XSDT", "FACP", "APIC", "DSDT"]
    };
    assert_eq!(signatures, expected, "tables in address order");
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

fn largest_guest() -> AcpiConfig {
    let mut config = four_of_eight();
    config.max_vcpus = 254;
    config.virtio_mmio = (0..32)
        .map(|i| MmioDevice {
            base: 0xd000_0000 + i * 0x1000,
            size: 0x1000,
            irq: 5 + i as u32,
        })
        .collect();
    config
}

#[test]
fn iasl_accepts_every_table_for_the_largest_guest() {
    disassemble_all(&largest_guest());
}

#[test]
fn iasl_accepts_every_table_with_a_pci_root_bus() {
    disassemble_all(&four_of_eight_with_pci());
    disassemble_all(&AcpiConfig {
        pci: Some(PciRootConfig::standard()),
        ..one_vcpu()
    });
    disassemble_all(&AcpiConfig {
        pci: Some(PciRootConfig::standard()),
        ..largest_guest()
    });
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

/// Disassembles `signature` of `config` and returns the stable part of the listing.
fn disassembly(iasl: &Path, config: &AcpiConfig, signature: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_tables(config, dir.path());
    disassemble(iasl, dir.path(), signature);
    let dsl = std::fs::read_to_string(dir.path().join(format!("{signature}.dsl"))).unwrap();
    stable_dsl(&dsl)
}

/// Compares the DSDT disassembly of `config` with the golden file `golden` (rewrites it with
/// `REVENANT_BLESS=1`).
fn assert_golden_dsdt(config: &AcpiConfig, golden: &str) {
    let Some(iasl) = iasl() else { return };
    let dsl = disassembly(&iasl, config, "DSDT");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(golden);
    if std::env::var("REVENANT_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, &dsl).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with REVENANT_BLESS=1)", path.display()));
    assert_eq!(
        dsl, expected,
        "DSDT disassembly differs from {golden}; if the change is intended, rerun with REVENANT_BLESS=1"
    );
}

#[test]
fn dsdt_matches_golden_disassembly() {
    assert_golden_dsdt(&four_of_eight(), GOLDEN_DSDT);
}

#[test]
fn dsdt_with_pci_matches_golden_disassembly() {
    assert_golden_dsdt(&four_of_eight_with_pci(), GOLDEN_DSDT_PCI);
}

/// The values of the `count` lines after the first line of `dsl` that starts with
/// `descriptor` (a resource descriptor's opening line): the first word of each, without
/// its comma, e.g. `["0x0CF8", "0x0CF8", "0x01", "0x08"]` for an `IO (Decode16,` block.
fn descriptor_values(dsl: &str, descriptor: &str, count: usize) -> Vec<String> {
    let mut lines = dsl.lines().map(str::trim);
    lines
        .by_ref()
        .find(|l| l.starts_with(descriptor))
        .unwrap_or_else(|| panic!("no {descriptor} in:\n{dsl}"));
    lines
        .take(count)
        .map(|l| {
            l.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches(',')
                .to_string()
        })
        .collect()
}

#[test]
fn mcfg_and_host_bridge_crs_disassemble_to_the_pci_layout() {
    let Some(iasl) = iasl() else { return };
    let config = four_of_eight_with_pci();
    let mcfg = disassembly(&iasl, &config, "MCFG");
    // Lines look like `[02Ch 0044   8]                 Base Address : 00000000E0000000`.
    let field = |name: &str| -> String {
        mcfg.lines()
            .find_map(|l| {
                let (_, rest) = l.split_once(']')?;
                let (key, value) = rest.split_once(" : ")?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} in:\n{mcfg}"))
    };
    assert_eq!(
        field("Base Address"),
        format!("{:016X}", platform::PCI_ECAM_BASE)
    );
    assert_eq!(field("Segment Group Number"), "0000");
    assert_eq!(field("Start Bus Number"), "00");
    assert_eq!(field("End Bus Number"), "00");
    assert_eq!(field("Revision"), "01");

    let dsdt = disassembly(&iasl, &config, "DSDT");
    let pci0 = &dsdt[dsdt.find("Device (PCI0)").expect("PCI0")..];
    assert_eq!(
        descriptor_values(pci0, "WordBusNumber (ResourceProducer", 5),
        ["0x0000", "0x0000", "0x0000", "0x0000", "0x0001"]
    );
    assert_eq!(
        descriptor_values(pci0, "IO (Decode16,", 4),
        ["0x0CF8", "0x0CF8", "0x01", "0x08"]
    );
    assert_eq!(
        descriptor_values(
            pci0,
            "DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite,",
            5
        ),
        [
            "0x00000000",
            "0xD0000000",
            "0xDFFFFFFF",
            "0x00000000",
            "0x10000000"
        ]
    );
    let slots = pci0
        .lines()
        .filter(|l| l.trim_start().starts_with("Device (S"))
        .count();
    assert_eq!(slots, 31, "one device per slot 1..=31");
    let phpr = &dsdt[dsdt.find("Device (PHPR)").expect("PHPR")..];
    assert_eq!(
        descriptor_values(phpr, "Memory32Fixed (ReadWrite,", 2),
        [
            format!("{:#010X}", platform::PCI_HOTPLUG_MMIO_BASE).replace("0X", "0x"),
            "0x00000010".to_string()
        ]
    );
    let mbrd = &dsdt[dsdt.find("Device (MBRD)").expect("MBRD")..];
    assert_eq!(
        descriptor_values(mbrd, "Memory32Fixed (ReadWrite,", 2),
        ["0xE0000000", "0x00100000"]
    );
}

/// Runs ACPICA's AML interpreter (`acpiexec`, also from acpica-tools) in batch mode over the
/// tables of `config` (our FADT, MADT, FACS, XSDT and DSDT; acpiexec makes its own RSDP),
/// after storing `init` values into named objects, and returns its output split into one
/// block per `evaluate` command, keyed by the path evaluated. acpiexec backs SystemMemory
/// regions with plain memory, so a field reads what was last written to it.
fn acpiexec(config: &AcpiConfig, init: &[(&str, u64)], paths: &[&str]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = write_tables(config, dir.path())
        .into_iter()
        .filter(|signature| signature != "RSDP")
        .map(|signature| format!("{signature}.dat"))
        .collect();
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
        .args(&files)
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

#[test]
fn acpiexec_reads_every_slot_address_and_number() {
    if !acpiexec_available() {
        return;
    }
    let mut paths = Vec::new();
    for slot in 1..32 {
        paths.push(format!("\\_SB.PCI0.S{slot:02X}._ADR"));
        paths.push(format!("\\_SB.PCI0.S{slot:02X}._SUN"));
    }
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    // acpiexec takes at most 1023 characters of batch commands.
    let blocks: Vec<(String, String)> = paths
        .chunks(16)
        .flat_map(|chunk| acpiexec(&four_of_eight_with_pci(), &[], chunk))
        .collect();
    assert_eq!(blocks.len(), 62);
    for (slot, pair) in (1u64..32).zip(blocks.chunks(2)) {
        let adr = format!("[Integer] = {:016X}", slot << 16);
        let sun = format!("[Integer] = {slot:016X}");
        assert!(pair[0].1.contains(&adr), "{:?} wants {adr}", pair[0]);
        assert!(pair[1].1.contains(&sun), "{:?} wants {sun}", pair[1]);
    }
    // The example from the issue: slot 5.
    assert!(blocks[8].0.ends_with("S05._ADR"));
    assert!(blocks[8].1.contains("[Integer] = 0000000000050000"));
    assert!(blocks[9].1.contains("[Integer] = 0000000000000005"));
}

/// The slots acpiexec printed a Notify for, with the value.
fn slot_notifies(block: &str) -> Vec<(String, u8)> {
    let mut found: Vec<(String, u8)> = block
        .lines()
        .filter_map(|l| {
            let name = l.split("Notify on [").nth(1)?.get(..4)?;
            let value = l.split("Value 0x").nth(1)?.get(..2)?;
            name.starts_with('S')
                .then(|| (name.to_string(), u8::from_str_radix(value, 16).unwrap()))
        })
        .collect();
    found.sort();
    found
}

#[test]
fn acpiexec_runs_the_pci_hotplug_event_into_slot_notifies() {
    if !acpiexec_available() {
        return;
    }
    let evt = ["\\_SB.GED._EVT 23"];
    let pci_bit = u64::from(platform::GED_EVENT_PCI_HOTPLUG);
    // Slot 5 plugged; slots 7 and 31 to unplug.
    let blocks = acpiexec(
        &four_of_eight_with_pci(),
        &[
            ("\\_SB.PHPR.PCIU", 1 << 5),
            ("\\_SB.PHPR.PCID", (1 << 7) | (1 << 31)),
            ("\\_SB.GED.GDAT", pci_bit),
        ],
        &evt,
    );
    let block = &blocks[0].1;
    assert_eq!(
        slot_notifies(block),
        [
            ("S05_".to_string(), 1),
            ("S07_".to_string(), 3),
            ("S1F_".to_string(), 3)
        ],
        "{block}"
    );
    assert!(!block.contains("[C000]"), "no CPU scan:\n{block}");
    assert!(!notified(block, "PWRB", 0x80), "{block}");

    // The host bridge's slot 0 has no device: its bit is ignored.
    let blocks = acpiexec(
        &four_of_eight_with_pci(),
        &[("\\_SB.PHPR.PCIU", 1), ("\\_SB.GED.GDAT", pci_bit)],
        &evt,
    );
    assert_eq!(slot_notifies(&blocks[0].1), [], "{}", blocks[0].1);

    // Other events do not scan the slots, and the existing bits still work with PCI.
    let blocks = acpiexec(
        &four_of_eight_with_pci(),
        &[
            ("\\_SB.PHPR.PCIU", 1 << 5),
            ("\\_SB.CPUS.CINS", 1),
            ("\\_SB.GED.GDAT", platform_bits(true, true)),
        ],
        &evt,
    );
    let block = &blocks[0].1;
    assert_eq!(slot_notifies(block), [], "{block}");
    assert!(notified(block, "C003", 1), "{block}");
    assert!(notified(block, "PWRB", 0x80), "{block}");

    // Without PCI the bit means nothing (and PCNT does not exist).
    let blocks = acpiexec(&four_of_eight(), &[("\\_SB.GED.GDAT", pci_bit)], &evt);
    assert!(!blocks[0].1.contains("Notify"), "{}", blocks[0].1);
}

#[test]
fn acpiexec_ejects_a_slot_through_the_controller() {
    if !acpiexec_available() {
        return;
    }
    let paths = [
        "\\_SB.PCI0.S05._EJ0 1",
        "\\_SB.PHPR.B0EJ",
        "\\_SB.PCI0.S1F._EJ0 1",
        "\\_SB.PHPR.B0EJ",
    ];
    let blocks = acpiexec(&four_of_eight_with_pci(), &[], &paths);
    // acpiexec's register block is plain memory: B0EJ reads back what _EJ0 wrote.
    assert!(
        blocks[1].1.contains("[Integer] = 0000000000000020"),
        "{:?}",
        blocks[1]
    );
    assert!(
        blocks[3].1.contains("[Integer] = 0000000080000000"),
        "{:?}",
        blocks[3]
    );
}
