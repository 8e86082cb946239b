//! The guest's ACPI tables: RSDP -> XSDT -> FADT (-> DSDT, FACS), MADT and, with a PCI root
//! bus, MCFG, built with the `acpi_tables` crate and laid out in the BIOS area described by
//! [`crate::platform`].
//!
//! The VMM calls [`build_tables`] and copies each [`Table`]'s bytes to its address; it points
//! the boot protocol (PVH start info / boot_params) at [`AcpiTables::rsdp_addr`].
//!
//! - `layout`: where each table goes in `[RSDP_ADDR, ACPI_AREA_END)`.
//! - `fadt`, `madt`, `mcfg`, `root`: the fixed-format tables (FADT and FACS, MADT, MCFG, XSDT
//!   and RSDP).
//! - `dsdt`: the AML namespace (virtio-mmio, COM1, GED, power button, sleep states, VMGenID).
//! - [`cpu_hotplug`]: the CPU hotplug container's AML and the register layout of the
//!   controller the VMM implements for it.
//! - [`pci`]: the PCI root bus's AML (host bridge, hot-plug slots, hot-plug controller) and
//!   the register layout of that controller.
//!
//! # What the VMM's devices must do
//! - Sleep/reset (FADT): the guest writes `SLP_TYP << 2 | SLP_EN` (one byte) to
//!   [`platform::SLEEP_CONTROL_PORT`], with SLP_TYP from the DSDT's `\_S3_` / `\_S4_` /
//!   `\_S5_` ([`platform::SLP_TYP_S3`], [`platform::SLP_TYP_S4`], [`platform::SLP_TYP_S5`]),
//!   and [`platform::RESET_VALUE`] to [`platform::RESET_PORT`] to reset.
//! - Generic Event Device `\_SB_.GED_` (ACPI0013): interrupt [`platform::GED_IRQ`] (IOAPIC
//!   pin, level, active high) and a 32-bit event register at [`platform::GED_MMIO_BASE`].
//!   When the interrupt fires the OS runs `_EVT`, which reads the register once (a DWord
//!   read) and handles every bit set in it: [`platform::GED_EVENT_CPU_HOTPLUG`] calls
//!   `\_SB_.CPUS.CSCN`, [`platform::GED_EVENT_POWER_BUTTON`] sends
//!   `Notify (\_SB_.PWRB, 0x80)` and, with a PCI root bus,
//!   [`platform::GED_EVENT_PCI_HOTPLUG`] calls `\_SB_.PCI0.PCNT`. The AML never writes the register, so the device should
//!   clear the bits it returns on that read and lower the interrupt.
//!   [`platform::GED_EVENT_MEMORY_HOTPLUG`] has no handler: memory is resized with virtio-mem,
//!   which needs no ACPI device.
//! - CPU hot-plug controller: see [`cpu_hotplug`].
//! - PCI root bus (only with [`AcpiConfig::pci`]): configuration space through the ECAM
//!   window the MCFG announces and through ports 0xCF8/0xCFC, 32-bit memory BARs inside the
//!   aperture the host bridge's `_CRS` announces, and the PCI hot-plug controller: see
//!   [`pci`].
//! - VMGenID (`\_SB_.VGEN`, `_CID` "VM_Gen_Counter"): the 16-byte generation ID lives at
//!   [`platform::VMGENID_ADDR`]; after changing it the VMM should make the guest see
//!   `Notify (\_SB_.VGEN, 0x80)`, which the GED sends for bit `GED_EVENT_VMGENID`.

pub mod cpu_hotplug;
mod dsdt;
mod fadt;
mod layout;
mod madt;
mod mcfg;
pub mod pci;
mod root;
#[cfg(test)]
mod tests;

use crate::platform;

/// The most vCPUs the tables can describe: xAPIC IDs are 8 bits and 0xff is the broadcast ID,
/// and the MADT's Processor Local APIC entry has 8-bit processor UIDs.
pub const MAX_VCPUS: u32 = 254;

/// OEM ID written into every table header and the RSDP.
pub const OEM_ID: [u8; 6] = *b"RVNANT";
/// OEM table ID of every table header.
pub const OEM_TABLE_ID: [u8; 8] = *b"REVENANT";
/// OEM revision of every table header.
pub const OEM_REVISION: u32 = 1;
/// Creator ID of every table header (the `acpi_tables` crate would write its own, "RVAT").
pub const CREATOR_ID: [u8; 4] = *b"RVNT";
/// Creator revision of every table header.
pub const CREATOR_REVISION: u32 = 1;

/// What the guest platform looks like, as far as the tables are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs running at boot (1..=[`MAX_VCPUS`]).
    pub boot_vcpus: u32,
    /// vCPUs that can exist after hot-plug (`boot_vcpus..=MAX_VCPUS`).
    pub max_vcpus: u32,
    /// virtio-mmio transports, announced as `LNRO0005` devices in the DSDT.
    pub virtio_mmio: Vec<MmioDevice>,
    /// Whether to announce the VMGenID device (generation ID at [`platform::VMGENID_ADDR`]).
    pub vmgenid: bool,
    /// The PCI root bus (segment 0), announced through the MCFG and `\_SB_.PCI0`; `None`
    /// leaves both out and the other tables exactly as they are without PCI.
    pub pci: Option<PciRootConfig>,
}

/// The PCI root bus the VMM implements: segment 0, buses `0..bus_count`, devices in slots
/// `1..slots` of bus 0 (slot 0 is the host bridge), each hot-pluggable.
///
/// Every window must lie below 4 GiB: the host bridge's aperture is a DWordMemory descriptor
/// and the hot-plug controller's and the ECAM's reservations are Memory32Fixed descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRootConfig {
    /// ECAM window of bus 0 (the MCFG's base address); bus n is at `+ n MiB`.
    pub ecam_base: u64,
    /// Buses behind the root (1..=256); the MCFG and `_CRS` cover buses `0..bus_count`.
    pub bus_count: u16,
    /// Where the guest may place 32-bit memory BARs (the host bridge's memory window).
    pub aperture_start: u64,
    pub aperture_size: u64,
    /// Register block of the PCI hot-plug controller ([`pci`] documents its registers).
    pub hotplug_mmio_base: u64,
    pub hotplug_mmio_len: u64,
    /// Device slots on bus 0, counting the host bridge's slot 0 (1..=32); the DSDT describes
    /// slots `1..slots` as hot-pluggable.
    pub slots: u8,
}

impl PciRootConfig {
    /// The root bus at the addresses in [`platform`]: ECAM of bus 0 only, the BAR aperture,
    /// the hot-plug controller and all 32 slots.
    pub fn standard() -> Self {
        Self {
            ecam_base: platform::PCI_ECAM_BASE,
            bus_count: (platform::PCI_ECAM_SIZE / pci::ECAM_BUS_SIZE) as u16,
            aperture_start: platform::PCI_BAR_APERTURE_START,
            aperture_size: platform::PCI_BAR_APERTURE_SIZE,
            hotplug_mmio_base: platform::PCI_HOTPLUG_MMIO_BASE,
            hotplug_mmio_len: platform::PCI_HOTPLUG_MMIO_LEN,
            slots: platform::PCI_SLOTS,
        }
    }

    /// Size of the ECAM window of all `bus_count` buses.
    pub fn ecam_size(&self) -> u64 {
        u64::from(self.bus_count) * pci::ECAM_BUS_SIZE
    }
}

/// One virtio-mmio transport: its register window and its IOAPIC pin (edge, active high).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

/// One table and where it goes in guest physical memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// "RSDP", "FACS", "XSDT", "FACP", "APIC", "MCFG" or "DSDT".
    pub signature: String,
    /// Guest physical address of the first byte.
    pub addr: u64,
    /// The table, checksummed, ready to copy.
    pub bytes: Vec<u8>,
}

/// All tables, in address order (the RSDP first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcpiTables {
    /// Where the RSDP is (always [`platform::RSDP_ADDR`]).
    pub rsdp_addr: u64,
    pub tables: Vec<Table>,
}

impl AcpiTables {
    /// The table with this signature, if there is one.
    pub fn get(&self, signature: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.signature == signature)
    }
}

/// Why the tables could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TablesError {
    /// A guest needs at least one vCPU at boot.
    #[error("boot_vcpus is 0; at least one vCPU must run at boot")]
    NoBootVcpus,
    /// max_vcpus counts the boot vCPUs too, so it cannot be smaller.
    #[error("max_vcpus ({max}) is smaller than boot_vcpus ({boot})")]
    MaxBelowBoot { boot: u32, max: u32 },
    /// More vCPUs than 8-bit xAPIC IDs can name.
    #[error("max_vcpus ({0}) is above {MAX_VCPUS}, the most 8-bit xAPIC IDs can name")]
    TooManyVcpus(u32),
    /// The DSDT names virtio devices `V000`..`VFFF`.
    #[error("{0} virtio-mmio devices requested; the DSDT can name at most 4096")]
    TooManyDevices(usize),
    /// The device's window cannot be described by a Memory32Fixed descriptor.
    #[error(
        "virtio-mmio device {index} ({base:#x}, size {size:#x}) is not within the first 4 GiB"
    )]
    DeviceAbove4G { index: usize, base: u64, size: u64 },
    /// A PCI root bus has 1..=32 slots (5-bit device numbers; the hot-plug registers have one
    /// bit per slot).
    #[error("the PCI root bus has {0} slots; it must have 1 to 32")]
    PciSlots(u8),
    /// The ECAM covers 1..=256 buses (8-bit bus numbers).
    #[error("the PCI root bus has {0} buses; it must have 1 to 256")]
    PciBusCount(u16),
    /// A PCI window is empty or not within the first 4 GiB, so 32-bit descriptors cannot
    /// describe it.
    #[error("the PCI {what} ({base:#x}, size {size:#x}) is empty or not within the first 4 GiB")]
    PciWindow {
        what: &'static str,
        base: u64,
        size: u64,
    },
    /// The hot-plug controller's block must hold its four 32-bit registers.
    #[error(
        "the PCI hot-plug controller's register block ({0:#x} bytes) is smaller than {min:#x}",
        min = pci::REGISTERS_LEN
    )]
    PciHotplugBlockTooSmall(u64),
    /// The tables grew past the end of the ACPI area.
    #[error(
        "the {signature} table ({len} bytes) does not fit in the ACPI area below {end:#x}",
        end = platform::ACPI_AREA_END
    )]
    DoesNotFit { signature: String, len: usize },
}

/// Builds every table for `config` and lays them out from [`platform::RSDP_ADDR`].
pub fn build_tables(config: &AcpiConfig) -> Result<AcpiTables, TablesError> {
    validate(config)?;

    // Neither the DSDT, the MADT nor the MCFG refers to another table, so they can be built
    // before the layout; the FADT, XSDT and RSDP hold addresses and are built after it.
    let dsdt = dsdt::build(config);
    let madt = madt::build(config);
    let mcfg = config.pci.as_ref().map(mcfg::build);
    let facs = fadt::build_facs();

    // The XSDT lists the FADT, the MADT and the MCFG if there is one (the DSDT and FACS are
    // reached through the FADT).
    let xsdt_entries = 2 + usize::from(mcfg.is_some());
    let mut placer = layout::Placer::new();
    let xsdt_addr = placer.place("XSDT", root::xsdt_len(xsdt_entries))?;
    let fadt_addr = placer.place("FACP", fadt::FADT_LEN)?;
    let madt_addr = placer.place("APIC", madt.len())?;
    let mcfg = match mcfg {
        Some(bytes) => Some((placer.place("MCFG", bytes.len())?, bytes)),
        None => None,
    };
    let dsdt_addr = placer.place("DSDT", dsdt.len())?;

    let fadt = fadt::build_fadt(dsdt_addr, platform::FACS_ADDR);
    let mut xsdt_targets = vec![fadt_addr, madt_addr];
    xsdt_targets.extend(mcfg.as_ref().map(|(addr, _)| *addr));
    let xsdt = root::build_xsdt(&xsdt_targets);
    let rsdp = root::build_rsdp(xsdt_addr);
    debug_assert_eq!(xsdt.len(), root::xsdt_len(xsdt_entries));
    debug_assert_eq!(fadt.len(), fadt::FADT_LEN);

    let mut tables = vec![
        table("RSDP", platform::RSDP_ADDR, rsdp),
        table("FACS", platform::FACS_ADDR, facs),
        table("XSDT", xsdt_addr, xsdt),
        table("FACP", fadt_addr, fadt),
        table("APIC", madt_addr, madt),
        table("DSDT", dsdt_addr, dsdt),
    ];
    if let Some((addr, bytes)) = mcfg {
        tables.push(table("MCFG", addr, bytes));
    }
    tables.sort_by_key(|t| t.addr);
    Ok(AcpiTables {
        rsdp_addr: platform::RSDP_ADDR,
        tables,
    })
}

fn validate(config: &AcpiConfig) -> Result<(), TablesError> {
    if config.boot_vcpus == 0 {
        return Err(TablesError::NoBootVcpus);
    }
    if config.max_vcpus < config.boot_vcpus {
        return Err(TablesError::MaxBelowBoot {
            boot: config.boot_vcpus,
            max: config.max_vcpus,
        });
    }
    if config.max_vcpus > MAX_VCPUS {
        return Err(TablesError::TooManyVcpus(config.max_vcpus));
    }
    if config.virtio_mmio.len() > dsdt::MAX_VIRTIO_DEVICES {
        return Err(TablesError::TooManyDevices(config.virtio_mmio.len()));
    }
    for (index, dev) in config.virtio_mmio.iter().enumerate() {
        let fits = u32::try_from(dev.base).is_ok()
            && u32::try_from(dev.size).is_ok()
            && dev
                .base
                .checked_add(dev.size)
                .is_some_and(|end| end <= 1 << 32);
        if !fits {
            return Err(TablesError::DeviceAbove4G {
                index,
                base: dev.base,
                size: dev.size,
            });
        }
    }
    if let Some(pci) = &config.pci {
        validate_pci(pci)?;
    }
    Ok(())
}

fn validate_pci(pci: &PciRootConfig) -> Result<(), TablesError> {
    if !(1..=pci::MAX_SLOTS).contains(&pci.slots) {
        return Err(TablesError::PciSlots(pci.slots));
    }
    if !(1..=pci::MAX_BUSES).contains(&pci.bus_count) {
        return Err(TablesError::PciBusCount(pci.bus_count));
    }
    for (what, base, size) in [
        ("ECAM window", pci.ecam_base, pci.ecam_size()),
        ("BAR aperture", pci.aperture_start, pci.aperture_size),
        (
            "hot-plug controller",
            pci.hotplug_mmio_base,
            pci.hotplug_mmio_len,
        ),
    ] {
        if !fits_below_4g(base, size) {
            return Err(TablesError::PciWindow { what, base, size });
        }
    }
    if pci.hotplug_mmio_len < pci::REGISTERS_LEN {
        return Err(TablesError::PciHotplugBlockTooSmall(pci.hotplug_mmio_len));
    }
    Ok(())
}

/// Whether `[base, base + size)` is non-empty and below 4 GiB.
fn fits_below_4g(base: u64, size: u64) -> bool {
    size > 0
        && u32::try_from(size).is_ok()
        && base.checked_add(size).is_some_and(|end| end <= 1 << 32)
}

fn table(signature: &str, addr: u64, bytes: Vec<u8>) -> Table {
    Table {
        signature: signature.to_string(),
        addr,
        bytes,
    }
}

/// Byte offsets in the common 36-byte system description table header (ACPI 6.5, 5.2.6).
mod header {
    pub const REVISION: usize = 8;
    pub const CHECKSUM: usize = 9;
    pub const CREATOR_ID: usize = 28;
    pub const CREATOR_REVISION: usize = 32;
    pub const LEN: usize = 36;
}

/// Puts Revenant's creator ID and the given revision into a table built by `acpi_tables`
/// (which writes its own creator and, for some tables, an older revision) and recomputes the
/// checksum. `bytes` must hold at least a full header.
fn finish_sdt(bytes: &mut [u8], revision: u8) {
    debug_assert!(bytes.len() >= header::LEN);
    bytes[header::REVISION] = revision;
    bytes[header::CREATOR_ID..header::CREATOR_ID + 4].copy_from_slice(&CREATOR_ID);
    bytes[header::CREATOR_REVISION..header::CREATOR_REVISION + 4]
        .copy_from_slice(&CREATOR_REVISION.to_le_bytes());
    bytes[header::CHECKSUM] = 0;
    bytes[header::CHECKSUM] = checksum(bytes);
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}
