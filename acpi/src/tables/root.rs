//! The root pointers: RSDP (revision 2) -> XSDT.

use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;

use super::{finish_sdt, header, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// XSDT revision (ACPI 6.5, 5.2.8).
const XSDT_REVISION: u8 = 1;

/// Size of an XSDT listing `entries` tables: header plus one 64-bit address per entry.
pub fn xsdt_len(entries: usize) -> usize {
    header::LEN + 8 * entries
}

/// Builds the XSDT listing the tables at `entries`.
pub fn build_xsdt(entries: &[u64]) -> Vec<u8> {
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for entry in entries {
        xsdt.add_entry(*entry);
    }
    let mut bytes = Vec::with_capacity(xsdt_len(entries.len()));
    xsdt.to_aml_bytes(&mut bytes);
    finish_sdt(&mut bytes, XSDT_REVISION);
    bytes
}

/// Builds the RSDP (revision 2, both checksums set) pointing at the XSDT.
pub fn build_rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    Rsdp::new(OEM_ID, xsdt_addr).to_aml_bytes(&mut bytes);
    bytes
}
