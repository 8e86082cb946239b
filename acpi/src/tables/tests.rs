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
        pci: None,
    }
}

/// `config(..)` with the standard PCI root bus.
fn with_pci(boot: u32, max: u32, virtio: u64, vmgenid: bool) -> AcpiConfig {
    AcpiConfig {
        pci: Some(PciRootConfig::standard()),
        ..config(boot, max, virtio, vmgenid)
    }
}

/// Configurations the tests run over: smallest, the golden one, largest, each also with PCI.
fn configs() -> Vec<AcpiConfig> {
    vec![
        config(1, 1, 0, false),
        config(4, 8, 3, true),
        config(254, 254, 32, true),
        config(1, 254, 32, false),
        with_pci(1, 1, 0, false),
        with_pci(4, 8, 3, true),
        with_pci(254, 254, 32, true),
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
        if cfg.pci.is_some() {
            assert_eq!(signatures, ["FACP", "APIC", "MCFG"]);
        } else {
            assert_eq!(signatures, ["FACP", "APIC"]);
        }
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
        assert_eq!(tables.tables.len(), 6 + usize::from(cfg.pci.is_some()));
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

/// Decodes the AML integer (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix) at the start of
/// `bytes`.
fn aml_integer(bytes: &[u8]) -> u64 {
    match bytes[0] {
        0x00 => 0,
        0x01 => 1,
        0x0a => u64::from(bytes[1]),
        0x0b => u64::from(u16::from_le_bytes([bytes[1], bytes[2]])),
        0x0c => u64::from(u32_at(bytes, 1)),
        0x0e => u64_at(bytes, 1),
        op => panic!("not an integer: opcode {op:#x}"),
    }
}

/// The integer `Name (<name>, ...)` holds, searching from `from`.
fn named_integer(aml: &[u8], from: usize, name: &[u8; 4]) -> u64 {
    let mut needle = vec![0x08]; // NameOp
    needle.extend_from_slice(name);
    let at = aml[from..]
        .windows(5)
        .position(|w| w == needle.as_slice())
        .unwrap_or_else(|| panic!("no Name ({})", String::from_utf8_lossy(name)));
    aml_integer(&aml[from + at + 5..])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn standard_pci_root_uses_the_platform_addresses() {
    let pci = PciRootConfig::standard();
    assert_eq!(pci.ecam_base, platform::PCI_ECAM_BASE);
    assert_eq!(pci.bus_count, 1);
    assert_eq!(pci.ecam_size(), platform::PCI_ECAM_SIZE);
    assert_eq!(pci.aperture_start, platform::PCI_BAR_APERTURE_START);
    assert_eq!(pci.aperture_size, platform::PCI_BAR_APERTURE_SIZE);
    assert_eq!(pci.hotplug_mmio_base, platform::PCI_HOTPLUG_MMIO_BASE);
    assert_eq!(pci.hotplug_mmio_len, platform::PCI_HOTPLUG_MMIO_LEN);
    assert_eq!(pci.slots, 32);
}

#[test]
fn mcfg_has_one_allocation_for_the_ecam_window() {
    for bus_count in [1u16, 4, 256] {
        let mut cfg = with_pci(4, 8, 3, true);
        let pci = cfg.pci.as_mut().unwrap();
        pci.bus_count = bus_count;
        pci.ecam_base = 0xb000_0000;
        let tables = build_tables(&cfg).unwrap();
        let mcfg = &tables.get("MCFG").unwrap().bytes;
        assert_eq!(mcfg.len(), mcfg::MCFG_LEN);
        assert_eq!(&mcfg[0..4], b"MCFG");
        assert_eq!(mcfg[8], 1, "revision");
        assert_eq!(sum(mcfg), 0);
        assert_eq!(&mcfg[28..32], b"RVNT", "creator ID");
        assert_eq!(mcfg[36..44], [0; 8], "reserved");
        assert_eq!(u64_at(mcfg, 44), 0xb000_0000, "ECAM base");
        assert_eq!(u16::from_le_bytes([mcfg[52], mcfg[53]]), 0, "segment");
        assert_eq!(mcfg[54], 0, "start bus");
        assert_eq!(u16::from(mcfg[55]), bus_count - 1, "end bus");
        assert_eq!(mcfg[56..60], [0; 4], "reserved");
    }
    let tables = build_tables(&with_pci(1, 1, 0, false)).unwrap();
    let mcfg = &tables.get("MCFG").unwrap().bytes;
    assert_eq!(u64_at(mcfg, 44), platform::PCI_ECAM_BASE);
    assert_eq!(mcfg[55], 0, "bus 0 only");
}

#[test]
fn without_pci_there_is_no_mcfg_and_no_pci_device() {
    let tables = build_tables(&config(4, 8, 3, true)).unwrap();
    assert!(tables.get("MCFG").is_none());
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    for name in [&b"PCI0"[..], b"PHPR", b"MBRD", b"PCNT", b"DVNT", b"S01_"] {
        assert!(!contains(dsdt, name), "{}", String::from_utf8_lossy(name));
    }
    let with = build_tables(&with_pci(4, 8, 3, true)).unwrap();
    let dsdt = &with.get("DSDT").unwrap().bytes;
    for name in [
        &b"PCI0"[..],
        b"PHPR",
        b"MBRD",
        b"PCNT",
        b"DVNT",
        b"PCEJ",
        b"B0EJ",
    ] {
        assert!(contains(dsdt, name), "{}", String::from_utf8_lossy(name));
    }
}

#[test]
fn every_slot_but_the_host_bridge_has_a_device_with_adr_and_sun() {
    let tables = build_tables(&with_pci(4, 8, 3, true)).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    let device_op = [0x5b, 0x82];
    let mut slots = Vec::new();
    for (at, _) in dsdt.windows(2).enumerate().filter(|(_, w)| *w == device_op) {
        // DeviceOp, PkgLength (1-2 bytes here), NameSeg.
        let len_bytes = 1 + usize::from(dsdt[at + 2] >> 6);
        let name = &dsdt[at + 2 + len_bytes..at + 6 + len_bytes];
        if name[0] == b'S' && name[3] == b'_' {
            let slot = u8::from_str_radix(std::str::from_utf8(&name[1..3]).unwrap(), 16).unwrap();
            assert_eq!(named_integer(dsdt, at, b"_ADR"), u64::from(slot) << 16);
            assert_eq!(named_integer(dsdt, at, b"_SUN"), u64::from(slot));
            slots.push(slot);
        }
    }
    assert_eq!(slots, (1..32).collect::<Vec<u8>>());

    let mut few = with_pci(1, 1, 0, false);
    few.pci.as_mut().unwrap().slots = 4;
    let tables = build_tables(&few).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    assert!(contains(dsdt, b"S03_") && !contains(dsdt, b"S04_"));
}

#[test]
fn host_bridge_crs_has_the_buses_config_ports_and_aperture() {
    let mut cfg = with_pci(1, 1, 0, false);
    let expect = |pci: &PciRootConfig| {
        let mut buses = vec![0x88, 0x0d, 0x00, 2, 0x0c, 0, 0, 0, 0, 0];
        buses.extend((pci.bus_count - 1).to_le_bytes());
        buses.extend([0, 0]);
        buses.extend(pci.bus_count.to_le_bytes());
        let ports = vec![0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08];
        // DWord address space: memory, producer, min/max fixed, cacheable read-write.
        let mut memory = vec![0x87, 0x17, 0x00, 0, 0x0c, 0x03, 0, 0, 0, 0];
        memory.extend((pci.aperture_start as u32).to_le_bytes());
        memory.extend(((pci.aperture_start + pci.aperture_size - 1) as u32).to_le_bytes());
        memory.extend([0; 4]);
        memory.extend((pci.aperture_size as u32).to_le_bytes());
        [buses, ports, memory].concat()
    };
    let tables = build_tables(&cfg).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    let standard = expect(&PciRootConfig::standard());
    assert!(contains(dsdt, &standard), "standard _CRS");
    assert_eq!(u32_at(&standard, 38), 0xdfff_ffff, "aperture maximum");

    let pci = cfg.pci.as_mut().unwrap();
    pci.bus_count = 16;
    pci.aperture_start = 0x8000_0000;
    pci.aperture_size = 0x4000_0000;
    let custom = expect(pci);
    let tables = build_tables(&cfg).unwrap();
    let dsdt = &tables.get("DSDT").unwrap().bytes;
    assert!(contains(dsdt, &custom), "custom _CRS");
    // The ECAM reservation covers all 16 buses.
    let mut ecam = vec![0x86, 0x09, 0x00, 0x01];
    ecam.extend((platform::PCI_ECAM_BASE as u32).to_le_bytes());
    ecam.extend((16u32 << 20).to_le_bytes());
    assert!(contains(dsdt, &ecam), "MBRD covers the ECAM window");
}

#[test]
fn invalid_pci_configs_are_errors() {
    let build = |f: &dyn Fn(&mut PciRootConfig)| {
        let mut cfg = with_pci(1, 1, 0, false);
        f(cfg.pci.as_mut().unwrap());
        build_tables(&cfg)
    };
    assert_eq!(build(&|p| p.slots = 0), Err(TablesError::PciSlots(0)));
    assert_eq!(build(&|p| p.slots = 33), Err(TablesError::PciSlots(33)));
    assert_eq!(
        build(&|p| p.bus_count = 0),
        Err(TablesError::PciBusCount(0))
    );
    assert_eq!(
        build(&|p| p.bus_count = 257),
        Err(TablesError::PciBusCount(257))
    );
    assert!(build(&|p| p.bus_count = 256).is_ok());
    // A window may end exactly at 4 GiB.
    assert!(build(&|p| p.aperture_start = 0xf000_0000).is_ok());
    assert!(build(&|p| p.slots = 1).is_ok());
    assert!(matches!(
        build(&|p| p.aperture_size = 0),
        Err(TablesError::PciWindow {
            what: "BAR aperture",
            ..
        })
    ));
    assert!(matches!(
        build(&|p| p.aperture_start = 0xf800_0000),
        Err(TablesError::PciWindow {
            what: "BAR aperture",
            ..
        })
    ));
    assert!(matches!(
        build(&|p| p.ecam_base = 0x1_0000_0000),
        Err(TablesError::PciWindow {
            what: "ECAM window",
            ..
        })
    ));
    assert!(matches!(
        build(&|p| {
            p.ecam_base = 0xf800_0000;
            p.bus_count = 256;
        }),
        Err(TablesError::PciWindow {
            what: "ECAM window",
            ..
        })
    ));
    assert!(matches!(
        build(&|p| p.hotplug_mmio_base = 0xffff_fff8),
        Err(TablesError::PciWindow {
            what: "hot-plug controller",
            ..
        })
    ));
    assert_eq!(
        build(&|p| p.hotplug_mmio_len = 8),
        Err(TablesError::PciHotplugBlockTooSmall(8))
    );
}

#[test]
fn pci_tables_fit_the_area_for_the_largest_guest() {
    let tables = build_tables(&with_pci(254, 254, 32, true)).unwrap();
    let dsdt = tables.get("DSDT").unwrap();
    let mcfg = tables.get("MCFG").unwrap();
    assert!(mcfg.addr < dsdt.addr, "MCFG is placed before the DSDT");
    let end = dsdt.addr + dsdt.bytes.len() as u64;
    // Far from the end: the VMGenID buffer is the next thing above the DSDT.
    assert!(end <= platform::VMGENID_ADDR, "DSDT ends at {end:#x}");
}
