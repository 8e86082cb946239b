//! Unit tests: checksums, pointers between tables, MADT contents and layout bounds, read back
//! from the bytes the builder returns.

use super::*;
use crate::platform;

fn config(boot: u32, max: u32, virtio: u64, vmgenid: bool) -> AcpiConfig {
    AcpiConfig {
        boot_vcpus: boot,
        max_vcpus: max,
        virtio_mmio: (0..virtio)
            .map(|i| MmioDevice {
                base: 0xd000_0000 + i * 0x1000,
                size: 0x1000,
                irq: 5 + i as u32,
            })
            .collect(),
        vmgenid,
    }
}

/// Configurations the tests run over: smallest, the golden one, largest.
fn configs() -> Vec<AcpiConfig> {
    vec![
        config(1, 1, 0, false),
        config(4, 8, 3, true),
        config(254, 254, 32, true),
        config(1, 254, 32, false),
    ]
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
}

fn u32_at(bytes: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap())
}

/// The table at guest address `addr`.
fn at(tables: &AcpiTables, addr: u64) -> &Table {
    tables
        .tables
        .iter()
        .find(|t| t.addr == addr)
        .unwrap_or_else(|| panic!("no table at {addr:#x}"))
}

#[test]
fn every_table_checksum_sums_to_zero_and_length_matches() {
    for cfg in configs() {
        let tables = build_tables(&cfg).unwrap();
        for t in tables
            .tables
            .iter()
            .filter(|t| t.signature != "RSDP" && t.signature != "FACS")
        {
            assert_eq!(sum(&t.bytes), 0, "{} checksum ({cfg:?})", t.signature);
            assert_eq!(&t.bytes[0..4], t.signature.as_bytes());
            assert_eq!(
                u32_at(&t.bytes, 4) as usize,
                t.bytes.len(),
                "{} length",
                t.signature
            );
            assert_eq!(&t.bytes[10..16], b"RVNANT");
            assert_eq!(&t.bytes[16..24], b"REVENANT");
            assert_eq!(&t.bytes[28..32], b"RVNT", "{} creator ID", t.signature);
        }
    }
}

#[test]
fn rsdp_checksums_and_xsdt_pointer() {
    let tables = build_tables(&config(2, 4, 1, false)).unwrap();
    assert_eq!(tables.rsdp_addr, platform::RSDP_ADDR);
    let rsdp = tables.get("RSDP").unwrap();
    assert_eq!(rsdp.addr, platform::RSDP_ADDR);
    assert_eq!(tables.tables[0].signature, "RSDP", "RSDP comes first");
    let b = &rsdp.bytes;
    assert_eq!(b.len(), 36);
    assert_eq!(&b[0..8], b"RSD PTR ");
    assert_eq!(b[15], 2, "revision");
    assert_eq!(&b[9..15], b"RVNANT");
    assert_eq!(sum(&b[0..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(b), 0, "extended checksum");
    assert_eq!(u32_at(b, 20), 36, "length");
    let xsdt = tables.get("XSDT").unwrap();
    assert_eq!(u64_at(b, 24), xsdt.addr);
}

#[test]
fn xsdt_entries_point_at_fadt_and_madt() {
    for cfg in configs() {
        let tables = build_tables(&cfg).unwrap();
        let xsdt = &tables.get("XSDT").unwrap().bytes;
        let entries: Vec<u64> = (36..xsdt.len())
            .step_by(8)
            .map(|o| u64_at(xsdt, o))
            .collect();
        let signatures: Vec<&str> = entries
            .iter()
            .map(|a| at(&tables, *a).signature.as_str())
            .collect();
        assert_eq!(signatures, ["FACP", "APIC"]);
        for a in entries {
            assert_eq!(
                &at(&tables, a).bytes[0..4],
                at(&tables, a).signature.as_bytes()
            );
        }
    }
}

#[test]
fn fadt_points_at_dsdt_and_facs() {
    let tables = build_tables(&config(4, 8, 3, true)).unwrap();
    let fadt = &tables.get("FACP").unwrap().bytes;
    let dsdt = tables.get("DSDT").unwrap();
    assert_eq!(fadt.len(), 276);
    assert_eq!(fadt[8], 6, "revision");
    assert_eq!(fadt[131], 5, "minor revision");
    assert_eq!(
        u32_at(fadt, 36),
        0,
        "FIRMWARE_CTRL must be 0 when X_FIRMWARE_CTRL is set"
    );
    assert_eq!(u32_at(fadt, 40) as u64, dsdt.addr, "DSDT");
    assert_eq!(u64_at(fadt, 132), platform::FACS_ADDR, "X_FIRMWARE_CTRL");
    assert_eq!(u64_at(fadt, 140), dsdt.addr, "X_DSDT");
    let facs = at(&tables, platform::FACS_ADDR);
    assert_eq!(facs.signature, "FACS");
    assert_eq!(&facs.bytes[0..4], b"FACS");
    assert_eq!(facs.bytes.len(), 64);
    assert_eq!(u32_at(&facs.bytes, 4), 64);
    assert_eq!(u32_at(&facs.bytes, 12), 0, "firmware waking vector");
    assert_eq!(u64_at(&facs.bytes, 24), 0, "X firmware waking vector");
}

#[test]
fn fadt_is_hw_reduced_with_sleep_and_reset_registers() {
    let tables = build_tables(&config(1, 1, 0, false)).unwrap();
    let fadt = &tables.get("FACP").unwrap().bytes;
    let flags = u32_at(fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
    assert_eq!(
        flags & (1 << 21),
        0,
        "LOW_POWER_S0_IDLE_CAPABLE not claimed"
    );
    // GAS: space 1 (I/O), 8 bits, offset 0, byte access, address.
    let io_byte = |port: u16| {
        let mut gas = vec![1u8, 8, 0, 1];
        gas.extend_from_slice(&u64::from(port).to_le_bytes());
        gas
    };
    assert_eq!(
        fadt[116..128],
        io_byte(platform::RESET_PORT)[..],
        "RESET_REG"
    );
    assert_eq!(fadt[128], platform::RESET_VALUE);
    assert_eq!(
        fadt[244..256],
        io_byte(platform::SLEEP_CONTROL_PORT)[..],
        "SLEEP_CONTROL_REG"
    );
    assert_eq!(
        fadt[256..268],
        io_byte(platform::SLEEP_STATUS_PORT)[..],
        "SLEEP_STATUS_REG"
    );
    assert_eq!(&fadt[268..276], b"REVENANT", "hypervisor vendor identity");
}

/// (type, bytes) of each MADT entry.
fn madt_entries(madt: &[u8]) -> Vec<(u8, &[u8])> {
    let mut entries = Vec::new();
    let mut off = 44;
    while off < madt.len() {
        let len = madt[off + 1] as usize;
        assert!(
            len >= 2 && off + len <= madt.len(),
            "entry at {off} overruns"
        );
        entries.push((madt[off], &madt[off..off + len]));
        off += len;
    }
    entries
}

#[test]
fn madt_has_one_lapic_per_possible_vcpu_with_the_right_flags() {
    for (boot, max) in [(1, 1), (4, 8), (1, 254), (254, 254)] {
        let tables = build_tables(&config(boot, max, 0, false)).unwrap();
        let madt = &tables.get("APIC").unwrap().bytes;
        assert_eq!(madt[8], 5, "MADT revision with online-capable");
        assert_eq!(u32_at(madt, 36), platform::LAPIC_ADDR);
        let entries = madt_entries(madt);
        let lapics: Vec<&[u8]> = entries.iter().filter(|e| e.0 == 0).map(|e| e.1).collect();
        assert_eq!(lapics.len(), max as usize, "{boot} of {max}");
        for (id, lapic) in lapics.iter().enumerate() {
            assert_eq!(lapic.len(), 8);
            assert_eq!(lapic[2] as usize, id, "processor UID");
            assert_eq!(lapic[3] as usize, id, "APIC ID");
            let expected = if (id as u32) < boot { 1 } else { 2 };
            assert_eq!(
                u32_at(lapic, 4),
                expected,
                "flags of vCPU {id} ({boot} of {max})"
            );
        }
        let ioapics: Vec<&[u8]> = entries.iter().filter(|e| e.0 == 1).map(|e| e.1).collect();
        assert_eq!(ioapics.len(), 1);
        assert_eq!(u32_at(ioapics[0], 4), platform::IOAPIC_ADDR);
        assert_eq!(u32_at(ioapics[0], 8), 0, "GSI base");
        let overrides: Vec<&[u8]> = entries.iter().filter(|e| e.0 == 2).map(|e| e.1).collect();
        assert_eq!(overrides.len(), 1);
        assert_eq!(overrides[0][3], 0, "source IRQ0");
        assert_eq!(u32_at(overrides[0], 4), 2, "to GSI 2");
    }
}

#[test]
fn layout_fits_the_area_without_overlap_for_the_largest_guest() {
    for cfg in configs() {
        let tables = build_tables(&cfg).unwrap();
        let mut ranges: Vec<(u64, u64, &str)> = tables
            .tables
            .iter()
            .map(|t| (t.addr, t.addr + t.bytes.len() as u64, t.signature.as_str()))
            .collect();
        // The VMGenID buffer is not a table but must not be overwritten by one.
        ranges.push((
            platform::VMGENID_ADDR,
            platform::VMGENID_ADDR + 16,
            "VMGENID",
        ));
        ranges.sort();
        for (start, end, sig) in &ranges {
            assert!(
                *start >= platform::RSDP_ADDR && *end <= platform::ACPI_AREA_END,
                "{sig}"
            );
        }
        for pair in ranges.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{:?} overlaps {:?}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(tables.get("FACS").unwrap().addr, platform::FACS_ADDR);
        assert_eq!(tables.tables.len(), 6);
    }
}

#[test]
fn invalid_configs_are_errors() {
    assert_eq!(
        build_tables(&config(0, 1, 0, false)),
        Err(TablesError::NoBootVcpus)
    );
    assert_eq!(
        build_tables(&config(4, 2, 0, false)),
        Err(TablesError::MaxBelowBoot { boot: 4, max: 2 })
    );
    assert_eq!(
        build_tables(&config(1, 255, 0, false)),
        Err(TablesError::TooManyVcpus(255))
    );
    assert_eq!(
        build_tables(&config(1, 1, 0x1001, false)),
        Err(TablesError::TooManyDevices(0x1001))
    );
    let mut high = config(1, 1, 1, false);
    high.virtio_mmio[0].base = 0x1_0000_0000;
    assert!(matches!(
        build_tables(&high),
        Err(TablesError::DeviceAbove4G { index: 0, .. })
    ));
    high.virtio_mmio[0].base = 0xffff_f000;
    high.virtio_mmio[0].size = 0x2000;
    assert!(matches!(
        build_tables(&high),
        Err(TablesError::DeviceAbove4G { index: 0, .. })
    ));
}

#[test]
fn too_many_devices_for_the_area_is_an_error_not_a_panic() {
    // 254 vCPUs and 2000 virtio devices: well past the 128 KiB area.
    match build_tables(&config(254, 254, 2000, true)) {
        Err(TablesError::DoesNotFit { signature, len }) => {
            assert_eq!(signature, "DSDT");
            assert!(len > 0x1_0000);
        }
        other => panic!("expected DoesNotFit, got {other:?}"),
    }
}

#[test]
fn dsdt_names_every_device_and_sleep_state() {
    let tables = build_tables(&config(4, 8, 3, true)).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    for name in [
        &b"V000"[..],
        b"V002",
        b"COM1",
        b"PWRB",
        b"GED_",
        b"CPUS",
        b"CSCN",
        b"C000",
        b"C007",
        b"VGEN",
        b"_S3_",
        b"_S4_",
        b"_S5_",
        b"LNRO0005",
        b"ACPI0013",
        b"ACPI0010",
        b"ACPI0007",
        b"VM_Gen_Counter",
    ] {
        assert!(has(name), "{}", String::from_utf8_lossy(name));
    }
    assert!(!has(b"V003") && !has(b"C008"));
    let without = build_tables(&config(4, 8, 3, false)).unwrap();
    let dsdt = &without.get("DSDT").unwrap().bytes;
    assert!(
        !dsdt.windows(4).any(|w| w == b"VGEN"),
        "no VMGenID unless asked"
    );
}

#[test]
fn sleep_packages_carry_the_platform_slp_typ() {
    let tables = build_tables(&config(1, 1, 0, false)).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    for (name, typ) in [
        (b"_S3_", platform::SLP_TYP_S3),
        (b"_S4_", platform::SLP_TYP_S4),
        (b"_S5_", platform::SLP_TYP_S5),
    ] {
        let at = dsdt.windows(4).position(|w| w == name).unwrap();
        // NameOp, name, PackageOp (0x12), PkgLength, NumElements 4, then SLP_TYP encoded as
        // One (0x01) or BytePrefix (0x0a) value, then three Zero (0x00).
        let pkg = &dsdt[at + 4..];
        assert_eq!(pkg[0], 0x12, "{name:?} is a package");
        assert_eq!(pkg[2], 4, "{name:?} has 4 elements");
        let first = match typ {
            1 => vec![0x01],
            t => vec![0x0a, t],
        };
        assert_eq!(pkg[3..3 + first.len()], first[..], "{name:?} SLP_TYP");
        assert_eq!(pkg[3 + first.len()..6 + first.len()], [0, 0, 0]);
    }
}
