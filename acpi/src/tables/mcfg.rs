//! MCFG (PCI Firmware Specification 3.3, 4.1.2): where the ECAM window of the root bus is, so
//! the guest reaches the whole 4 KiB configuration space of each function (PCIe extended
//! capabilities included) by memory accesses instead of ports 0xCF8/0xCFC.

use acpi_tables::mcfg::MCFG;
use acpi_tables::Aml;

use super::{finish_sdt, PciRootConfig, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// MCFG revision (PCI Firmware Specification 3.3, table 4-2).
const MCFG_REVISION: u8 = 1;
/// The only PCI segment group.
const SEGMENT: u16 = 0;

/// Size of an MCFG with one allocation: header, 8 reserved bytes, one 16-byte entry.
#[cfg(test)]
pub const MCFG_LEN: usize = super::header::LEN + 8 + 16;

/// Builds the MCFG with one allocation: segment 0, buses `0..bus_count` at `ecam_base`.
/// `pci` must have passed `validate()` (1..=256 buses).
pub fn build(pci: &PciRootConfig) -> Vec<u8> {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let end_bus = u8::try_from(pci.bus_count.saturating_sub(1)).unwrap_or(u8::MAX);
    mcfg.add_ecam(pci.ecam_base, SEGMENT, 0, end_bus);
    let mut bytes = Vec::new();
    mcfg.to_aml_bytes(&mut bytes);
    finish_sdt(&mut bytes, MCFG_REVISION);
    bytes
}
